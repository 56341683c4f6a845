from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from motionmasks.consensus import consensus_voting
from motionmasks.formats import MapShard, read_map_shard, write_map_shard
from motionmasks.video import read_clip


@task(name="consensus-batch")
def voting_batch(items: list[dict[str, Any]], out_dir: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    """items: {"video", "motion" (shard path)} -> one row per video.

    Frames are decoded again at the size the motion stage recorded, so the
    saliency and the frames always line up. Writes ``<out_dir>/<shard name>``.
    """
    rows = []
    for item in items:
        start = time.perf_counter()
        try:
            motion = read_map_shard(item["motion"])
            source, max_side = motion.meta["source"], motion.meta["max_side"]
            shot_of_frame = motion.extras["shot"]
            maps = np.zeros_like(motion.maps)
            for shot in np.unique(shot_of_frame):
                where = np.flatnonzero(shot_of_frame == shot)
                indices = motion.frames[where]
                step = int(indices[1] - indices[0]) if len(indices) > 1 else 1
                clip, _ = read_clip(source, int(indices[0]), int(indices[-1]), step, max_side)
                maps[where] = consensus_voting(clip, motion.maps[where], **options)
            out_path = Path(out_dir) / Path(item["motion"]).name
            write_map_shard(out_path, MapShard(maps, motion.frames, motion.extras, motion.meta))
            rows.append({"video": item["video"], "status": "ok", "reason": "", "path": str(out_path),
                         "frames": len(maps), "seconds": time.perf_counter() - start})
        except Exception as exc:  # recorded per item, never raised
            rows.append({"video": item["video"], "status": "failed", "reason": f"{item['motion']}: {exc}",
                         "path": "", "frames": 0, "seconds": time.perf_counter() - start})
    return rows
