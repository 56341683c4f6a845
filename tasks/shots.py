from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any

from prefect import task

from motionmasks.segment import Segmenter, plan_shots
from tasks.roots import under


@task(name="shots-batch")
def split_batch(items: list[dict[str, Any]], segmenter: Segmenter, root: str = ".") -> list[dict[str, Any]]:
    """items: {"video", "path"} -> {"video", "status", "reason", "seconds", "records": [ShotRecord as dict, ...]}"""
    results = []
    for item in items:
        start = time.perf_counter()
        try:
            records = plan_shots(under(root, item["path"]), item["video"], segmenter)
            records = [replace(r, source=str(item["path"])) for r in records]  # as the fetched table names it
            results.append(
                {"video": item["video"], "status": "ok", "reason": "", "records": [asdict(r) for r in records]}
            )
        except Exception as exc:  # any item failure is recorded, never raised
            reason = f"{item['path']}: {exc}" if str(item["path"]) not in str(exc) else str(exc)
            results.append({"video": item["video"], "status": "failed", "reason": reason, "records": []})
        results[-1]["seconds"] = time.perf_counter() - start
    return results
