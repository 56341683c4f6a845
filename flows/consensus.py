"""Stage ``consensus``: superpixels, descriptors and non-local consensus
voting turn each shot part's 8-bit motion saliency into soft foreground maps
(uNLC; ``motionmasks.segment.shot_masks``). Each video is decoded once, in
order, at the working size of its shot records.

Writes one map shard per video (same layout as the motion stage's), an index
table (one row per video) and a failures report.
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
from motionmasks.formats import read_shot_records, read_table
from motionmasks.params import ConsensusParams, Params
from tasks.consensus import voting_batch


def _crashed(item: dict, reason: str) -> dict:
    return {"video": item["video"], "status": "failed", "reason": reason, "path": "", "frames": 0, "seconds": 0.0}


@flow(name="consensus", log_prints=True)
def consensus(
    shots_path: Path,
    motion_index_path: Path,
    out_dir: Path,
    index_path: Path,
    failures_path: Path,
    metrics_path: Path,
    params: ConsensusParams,
    batch_size: int = 4,
) -> dict:
    start = time.perf_counter()
    motion_index = read_table(motion_index_path)
    shards: dict[str, str] = dict(motion_index[["video", "path"]].drop_duplicates().itertuples(index=False))
    # the videos whose saliency the motion stage made, with their records from the shot table
    items = [
        {**item, "motion": shards[item["video"]]}
        for item in videos_of(read_shot_records(shots_path, usable_only=True))
        if item["video"] in shards
    ]
    if not items:
        raise StageFailed(f"consensus: the motion index {motion_index_path} lists no video; check the motion stage")
    options = params.model_dump(exclude={"max_failure_fraction"})
    with atomic_dir(out_dir) as tmp:
        rows = map_batches(
            voting_batch, items, batch_size, _crashed, out_dir=str(tmp), consensus=options, root=str(Path.cwd())
        )
    table = shard_paths_in(pd.DataFrame(rows), out_dir)
    ok, failed = record_results("consensus", table, index_path, failures_path, item="video")
    frames, busy = int(ok["frames"].sum()), float(table["seconds"].sum())
    metrics = {
        "videos": len(items),
        "failed": len(failed),
        "frames": frames,
    }
    timing = {
        "seconds": time.perf_counter() - start,
        "frames_per_second_per_worker": round(frames / busy, 1) if busy else 0.0,
    }
    publish_metrics("consensus", metrics, metrics_path, timing)
    check_failure_fraction("consensus", len(failed), len(items), params.max_failure_fraction, failures_path)
    return metrics


def _run(args, params: Params) -> None:
    consensus.with_options(task_runner=make_task_runner(params.runtime, "cpu"))(
        args.shots,
        args.motion_index,
        args.out,
        args.index,
        args.failures,
        args.metrics,
        params.consensus,
        batch_size=params.runtime.batch_size,
    )


def main() -> None:
    stage_main(
        "Consensus voting: soft foreground maps from motion saliency.",
        {
            "shots": "shot records (.parquet, from the shots stage)",
            "motion_index": "motion stage index (.parquet)",
            "out": "folder for the per-video soft-map shards",
            "index": "index table to write (.parquet, one row per video)",
            "failures": "failures report to write (.csv)",
            "metrics": "metrics JSON to write",
        },
        _run,
    )


if __name__ == "__main__":
    main()
