"""Stage ``motion``: optical flow and motion saliency for every usable shot part
(``motionmasks.segment.shot_saliency``). Each video is decoded once, in order,
at the working size its shot records give.

Writes one map shard per video (``<out>/<video>.npz``: 8-bit saliency, frame
indices, shot and part ids, per-frame ``reliable`` flags), an index table (one
row per shot part) and a failures report.
"""

from __future__ import annotations

if __name__ == "__main__":  # a stage process started by DVC: before the slow imports
    from flows.lifeline import die_with_parent
    from flows.prefect_api import report_to_project_api

    die_with_parent()  # never outlive the run
    report_to_project_api(".")  # DVC runs it in the project folder: its runs are recorded there

import time
from pathlib import Path

import pandas as pd
from prefect import flow

from flows.fanout import make_task_runner, map_batches
from flows.stage import (
    StageFailed,
    check_failure_fraction,
    publish_metrics,
    record_results,
    shard_paths_in,
    stage_main,
    videos_of,
)
from motionmasks.atomic import atomic_dir
from motionmasks.formats import read_shot_records
from motionmasks.params import MotionParams, Params
from tasks.motion import failed_row, saliency_batch


def _crashed(item: dict, reason: str) -> dict:
    return failed_row(item["video"], reason)


@flow(name="motion", log_prints=True)
def motion(
    shots_path: Path,
    out_dir: Path,
    index_path: Path,
    failures_path: Path,
    metrics_path: Path,
    params: MotionParams,
    batch_size: int = 4,
) -> dict:
    start = time.perf_counter()
    items = videos_of(read_shot_records(shots_path, usable_only=True))
    if not items:
        raise StageFailed(
            f"motion: no usable shot in {shots_path} (shots shorter than shots.min_shot are not used); "
            "check the shots stage's table and failures report"
        )
    options = params.model_dump(exclude={"max_failure_fraction"})
    with atomic_dir(out_dir) as tmp:
        rows = map_batches(
            saliency_batch, items, batch_size, _crashed, out_dir=str(tmp), motion=options, root=str(Path.cwd())
        )
    table = shard_paths_in(pd.DataFrame(rows), out_dir)
    ok, failed = record_results("motion", table, index_path, failures_path, item="video")
    frames, busy = int(ok["frames"].sum()), float(table["seconds"].sum())
    metrics = {
        "videos": len(items),
        "failed": len(failed),
        "shots": len(ok.drop_duplicates(["video", "shot"])),
        "parts": len(ok),
        "frames": frames,
        "unreliable_frames": int(ok["unreliable_frames"].sum()),
    }
    timing = {
        "seconds": time.perf_counter() - start,
        "frames_per_second_per_worker": round(frames / busy, 1) if busy else 0.0,
    }
    publish_metrics("motion", metrics, metrics_path, timing)
    check_failure_fraction("motion", len(failed), len(items), params.max_failure_fraction, failures_path)
    return metrics


def _run(args, params: Params) -> None:
    motion.with_options(task_runner=make_task_runner(params.runtime, "cpu"))(
        args.shots,
        args.out,
        args.index,
        args.failures,
        args.metrics,
        params.motion,
        batch_size=params.runtime.batch_size,
    )


def main() -> None:
    stage_main(
        "Optical flow and motion saliency for every usable shot.",
        {
            "shots": "shot records (.parquet, from the shots stage)",
            "out": "folder for the per-video saliency shards",
            "index": "index table to write (.parquet, one row per shot part)",
            "failures": "failures report to write (.csv)",
            "metrics": "metrics JSON to write",
        },
        _run,
    )


if __name__ == "__main__":
    main()
