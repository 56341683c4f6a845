from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import task

from motionmasks.formats import ShotRecord, safe_name
from motionmasks.prune import prune_video
from tasks.roots import records_under, under


@task(name="prune-batch")
def prune_batch(
    items: list[dict[str, Any]], out_dir: str, prune: dict[str, Any], root: str = "."
) -> list[dict[str, Any]]:
    """items: {"video", "consensus" (shard path), "records": [ShotRecord, ...]} -> one row per video.

    Writes ``<out_dir>/<safe name>.npz`` (a training shard) for each video with
    frames left; the row carries what each rule removed.
    """
    rows = []
    for item in items:
        start = time.perf_counter()
        records: list[ShotRecord] = item["records"]
        out_path = Path(out_dir) / f"{safe_name(item['video'])}.npz"
        try:
            outcome = prune_video(
                item["video"],
                records_under(root, records),
                under(root, item["consensus"]),
                under(root, out_path),
                prune,
            )
            row = {key: value for key, value in asdict(outcome).items() if key != "sampled"}
            row.update(
                video=item["video"],
                status="ok",
                reason="",
                path=str(out_path) if len(outcome.sampled) else "",
                sampled=len(outcome.sampled),
            )
        except Exception as exc:  # recorded per item, never raised
            row = {"video": item["video"], "status": "failed", "reason": f"{item['consensus']}: {exc}", "path": ""}
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    return rows
