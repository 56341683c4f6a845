from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from motionmasks.download import fetch_batch
from tasks.roots import under


# Retries for the network live inside fetch_one (per item, transient errors
# only, with backoff and resume); a Prefect-level retry would re-fetch the
# whole batch.
@task(name="download-batch")
def download_batch(
    items: list[dict[str, Any]], out_dir: str, options: dict[str, Any], root: str = "."
) -> list[dict[str, Any]]:
    rows = fetch_batch(items, under(root, out_dir), **options)
    for row in rows:  # named as the stage gave the folder, not as this worker resolved it
        if row.get("path"):
            row["path"] = str(Path(out_dir) / Path(row["path"]).name)
    return rows
