from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from motionmasks.formats import MapShard, ShotRecord, safe_name, write_map_shard
from motionmasks.segment import decode_parts, shot_saliency
from tasks.roots import records_under, under


@task(name="motion-batch")
def saliency_batch(
    items: list[dict[str, Any]], out_dir: str, motion: dict[str, Any], root: str = "."
) -> list[dict[str, Any]]:
    """items: {"video", "records": [ShotRecord, ...]} -> one row per record (shot part).

    Decodes each video once, in order, and writes one shard per video (all its
    parts, 8-bit saliency at the working size): ``<out_dir>/<safe name>.npz``.
    """
    rows: list[dict[str, Any]] = []
    for item in items:
        start = time.perf_counter()
        records: list[ShotRecord] = item["records"]
        shard_path = Path(out_dir) / f"{safe_name(item['video'])}.npz"
        try:
            maps, frames, shots, parts, reliable, part_rows = [], [], [], [], [], []
            for record, clip in decode_parts(records_under(root, records)):
                saliency, ok = shot_saliency(clip, motion)
                indices = np.arange(record.first, record.last + 1, dtype=np.int64)
                maps.append(saliency)
                frames.append(indices)
                shots.append(np.full(len(indices), record.shot, np.int64))
                parts.append(np.full(len(indices), record.part, np.int64))
                reliable.append(ok)
                part_rows.append(
                    {
                        "video": item["video"],
                        "shot": record.shot,
                        "part": record.part,
                        "frames": len(indices),
                        "unreliable_frames": int((~ok).sum()),
                    }
                )
            write_map_shard(
                under(root, shard_path),
                MapShard(
                    np.concatenate(maps),
                    np.concatenate(frames),
                    extras={
                        "shot": np.concatenate(shots),
                        "part": np.concatenate(parts),
                        "reliable": np.concatenate(reliable),
                    },
                    meta={"video": item["video"], "source": records[0].source},
                ),
            )
            seconds = time.perf_counter() - start
            rows.extend(
                {**r, "status": "ok", "reason": "", "path": str(shard_path), "seconds": seconds / len(part_rows)}
                for r in part_rows
            )
        except Exception as exc:  # recorded per item, never raised
            source = records[0].source if records else item["video"]
            reason = str(exc) if source in str(exc) else f"{source}: {exc}"
            rows.append(failed_row(item["video"], reason, time.perf_counter() - start))
    return rows


def failed_row(video: str, reason: str, seconds: float = 0.0) -> dict[str, Any]:
    """The index row of a video whose saliency could not be made."""
    return {
        "video": video,
        "shot": -1,
        "part": -1,
        "frames": 0,
        "unreliable_frames": 0,
        "status": "failed",
        "reason": reason,
        "path": "",
        "seconds": seconds,
    }
