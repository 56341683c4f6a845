from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from motionmasks.download import fetch_batch


# Retries for the network live inside fetch_one (per item, transient errors
# only, with backoff and resume); a Prefect-level retry would re-fetch the
# whole batch.
@task(name="download-batch")
def download_batch(items: list[dict[str, Any]], out_dir: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    return fetch_batch(items, Path(out_dir), **options)
