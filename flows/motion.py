"""Stage ``motion``: optical flow and motion saliency for every usable shot
(see ``motionmasks.motion``). Each video's shots are decoded once at the
working size ``motion.max_side`` and streamed shot by shot.

Writes one map shard per video (``<out>/<video>.npz``: saliency in [0, 1]
quantised to 8 bits, frame indices, shot ids, per-frame ``reliable`` flags),
an index table (one row per shot) and a failures report.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from prefect import flow

from flows.fanout import make_task_runner, map_batches
from flows.stage import StageFailed, check_failure_fraction, publish_metrics, record_results, shard_paths_in, stage_main
from motionmasks.formats import atomic_dir, read_table
from motionmasks.params import MotionParams, Params
from tasks.motion import saliency_batch


def _crashed(item: dict, reason: str) -> dict:
    return {"video": item["video"], "shot": -1, "frames": 0, "unreliable_frames": 0, "status": "failed",
            "reason": reason, "path": "", "seconds": 0.0}


@flow(name="motion", log_prints=True)
def motion(fetched_path: Path, shots_path: Path, out_dir: Path, index_path: Path, failures_path: Path,
           metrics_path: Path, params: MotionParams, batch_size: int = 4) -> dict:
    start = time.perf_counter()
    paths = dict(read_table(fetched_path)[["id", "path"]].itertuples(index=False))
    shots = read_table(shots_path)
    shots = shots[shots["status"] == "ok"]
    items = [
        {"video": video, "path": paths[video],
         "shots": group[["shot", "first", "last", "step"]].astype(int).to_dict("records")}
        for video, group in shots.groupby("video", sort=True)
    ]
    if not items:
        raise StageFailed(f"motion: no usable shot in {shots_path} (shots shorter than shots.min_shot are not used); "
                          "check the shots stage's table and failures report")
    options = params.model_dump(exclude={"max_side", "max_failure_fraction"})
    with atomic_dir(out_dir) as tmp:
        rows = map_batches(saliency_batch, items, batch_size, _crashed,
                           out_dir=str(tmp), max_side=params.max_side, options=options)
    table = shard_paths_in(pd.DataFrame(rows), out_dir)
    ok, failed = record_results("motion", table, index_path, failures_path, item="video")
    frames, busy = int(ok["frames"].sum()), float(table["seconds"].sum())
    metrics = {
        "videos": len(items),
        "failed": len(failed),
        "shots": len(ok),
        "frames": frames,
        "unreliable_frames": int(ok["unreliable_frames"].sum()),
        "frames_per_second_per_worker": round(frames / busy, 1) if busy else 0.0,
        "seconds": round(time.perf_counter() - start, 3),
    }
    publish_metrics("motion", metrics, metrics_path)
    check_failure_fraction("motion", len(failed), len(items), params.max_failure_fraction, failures_path)
    return metrics


def _run(args, params: Params) -> None:
    motion.with_options(task_runner=make_task_runner(params.runtime, "cpu"))(
        args.fetched, args.shots, args.out, args.index, args.failures, args.metrics, params.motion,
        batch_size=params.runtime.batch_size,
    )


def main() -> None:
    stage_main(
        "Optical flow and motion saliency for every usable shot.",
        {
            "fetched": "table of fetched videos (.parquet)",
            "shots": "shot table (.parquet)",
            "out": "folder for the per-video saliency shards",
            "index": "index table to write (.parquet, one row per shot)",
            "failures": "failures report to write (.csv)",
            "metrics": "metrics JSON to write",
        },
        _run,
    )


if __name__ == "__main__":
    main()
