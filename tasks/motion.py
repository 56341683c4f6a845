from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from motionmasks.download import safe_name
from motionmasks.formats import MapShard, write_map_shard
from motionmasks.motion import motion_saliency
from motionmasks.video import read_clip


@task(name="motion-batch")
def saliency_batch(items: list[dict[str, Any]], out_dir: str, max_side: int, options: dict[str, Any]) -> list[dict[str, Any]]:
    """items: {"video", "path", "shots": [{"shot", "first", "last", "step"}]} -> one row per shot.

    Writes one shard per video (all its shots): ``<out_dir>/<video>.npz``.
    """
    rows = []
    for item in items:
        start = time.perf_counter()
        shard_path = Path(out_dir) / f"{safe_name(item['video'])}.npz"
        try:
            maps, frames, shot_ids, reliable, shot_rows = [], [], [], [], []
            for shot in item["shots"]:
                clip, indices = read_clip(item["path"], shot["first"], shot["last"], shot["step"], max_side)
                saliency, diagnostics = motion_saliency(clip, **options)
                ok = diagnostics["reliable"].to_numpy(bool)
                maps.append(saliency)
                frames.append(indices)
                shot_ids.append(np.full(len(indices), shot["shot"], np.int64))
                reliable.append(ok)
                shot_rows.append({"video": item["video"], "shot": shot["shot"], "frames": len(indices),
                                  "unreliable_frames": int((~ok).sum())})
            write_map_shard(shard_path, MapShard(
                np.concatenate(maps), np.concatenate(frames),
                extras={"shot": np.concatenate(shot_ids), "reliable": np.concatenate(reliable)},
                meta={"video": item["video"], "source": str(item["path"]), "max_side": max_side},
            ))
            seconds = time.perf_counter() - start
            rows.extend({**r, "status": "ok", "reason": "", "path": str(shard_path), "seconds": seconds / len(shot_rows)}
                        for r in shot_rows)
        except Exception as exc:  # recorded per item, never raised
            rows.append({"video": item["video"], "shot": -1, "frames": 0, "unreliable_frames": 0, "status": "failed",
                         "reason": f"{item['path']}: {exc}", "path": "", "seconds": time.perf_counter() - start})
    return rows
