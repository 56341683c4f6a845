from __future__ import annotations

import time
from typing import Any

from prefect import task

from motionmasks.shots import split_video


@task(name="shots-batch")
def split_batch(items: list[dict[str, Any]], options: dict[str, Any]) -> list[dict[str, Any]]:
    """items: {"video", "path"} -> {"video", "status", "reason", "seconds", "shots": [row, ...]}"""
    results = []
    for item in items:
        start = time.perf_counter()
        try:
            shots = split_video(item["path"], **options)
            results.append({"video": item["video"], "status": "ok", "reason": "", "shots": shots})
        except Exception as exc:  # any item failure is recorded, never raised
            reason = f"{item['path']}: {exc}" if str(item["path"]) not in str(exc) else str(exc)
            results.append({"video": item["video"], "status": "failed", "reason": reason, "shots": []})
        results[-1]["seconds"] = time.perf_counter() - start
    return results
