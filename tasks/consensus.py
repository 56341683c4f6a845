from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from motionmasks.formats import MapShard, ShotRecord, read_map_shard, write_map_shard
from motionmasks.segment import decode_parts, shot_masks
from tasks.roots import records_under, under


@task(name="consensus-batch")
def voting_batch(
    items: list[dict[str, Any]], out_dir: str, consensus: dict[str, Any], root: str = "."
) -> list[dict[str, Any]]:
    """items: {"video", "motion" (shard path), "records": [ShotRecord, ...]} -> one row per video.

    Decodes each video once, in order, at the records' working size (the size
    the motion stage's saliency has), and writes ``<out_dir>/<shard name>``
    with the same frames, in the same order, as the motion shard.
    """
    rows = []
    for item in items:
        start = time.perf_counter()
        records: list[ShotRecord] = item["records"]
        try:
            motion = read_map_shard(under(root, item["motion"]), quantised=True)
            key = motion.extras["shot"] * 1_000_000 + motion.extras["part"]
            maps = np.zeros_like(motion.maps)
            for record, clip in decode_parts(records_under(root, records)):
                where = np.flatnonzero(key == record.shot * 1_000_000 + record.part)
                if len(where) != len(clip):
                    raise ValueError(
                        f"the motion shard has {len(where)} frames of shot {record.shot} part "
                        f"{record.part}, the shot table {len(clip)}; re-run the motion stage"
                    )
                maps[where] = shot_masks(clip, motion.maps[where], consensus)
            out_path = Path(out_dir) / Path(item["motion"]).name
            write_map_shard(under(root, out_path), MapShard(maps, motion.frames, motion.extras, motion.meta))
            rows.append(
                {
                    "video": item["video"],
                    "status": "ok",
                    "reason": "",
                    "path": str(out_path),
                    "frames": len(maps),
                    "seconds": time.perf_counter() - start,
                }
            )
        except Exception as exc:  # recorded per item, never raised
            rows.append(
                {
                    "video": item["video"],
                    "status": "failed",
                    "reason": f"{item['motion']}: {exc}",
                    "path": "",
                    "frames": 0,
                    "seconds": time.perf_counter() - start,
                }
            )
    return rows
