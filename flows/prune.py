"""Stage ``prune``: keep the frames whose motion masks can teach the ConvNet
and sample a few per shot (paper §4; ``motionmasks.prune``).

Writes one training shard per video that keeps any frame (the sampled frames
decoded once, at the working size, with their soft masks), an index table
(one row per video: its shard and what each rule removed) and metrics: how
many frames, shots and videos each rule removed.
"""

from __future__ import annotations

if __name__ == "__main__":  # a stage process started by DVC: before the slow imports
    from flows.lifeline import die_with_parent
    from flows.prefect_api import report_to_project_api

    die_with_parent()  # never outlive the run
    report_to_project_api(".")  # DVC runs it in the project folder: its runs are recorded there

from pathlib import Path

import pandas as pd
from prefect import flow
from prefect.artifacts import create_table_artifact

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
from motionmasks.params import Params, PruneParams
from motionmasks.prune import RULES
from tasks.prune import prune_batch


def _crashed(item: dict, reason: str) -> dict:
    return {"video": item["video"], "status": "failed", "reason": reason, "path": "", "seconds": 0.0}


def removal_table(ok: pd.DataFrame) -> dict:
    """Frames, shots and videos each rule removed (in rule order), and what is left."""
    removed = {
        rule: {
            "frames": int(sum(r.get(rule, 0) for r in ok["removed_frames"])),
            "shots": int(sum(r.get(rule, 0) for r in ok["removed_shots"])),
            "videos": int((ok["removed_by"] == rule).sum()),
        }
        for rule in RULES
    }
    return {
        "removed": removed,
        "frames_in": int(ok["frames"].sum()),
        "shots_in": int(ok["shots"].sum()),
        "videos_in": len(ok),
        "frames_kept": int(ok["kept_frames"].sum()),
        "frames_sampled": int(ok["sampled"].sum()),
        "videos_kept": int((ok["sampled"] > 0).sum()),
    }


@flow(name="prune", log_prints=True)
def prune(
    shots_path: Path,
    consensus_index_path: Path,
    out_dir: Path,
    index_path: Path,
    failures_path: Path,
    metrics_path: Path,
    params: PruneParams,
    batch_size: int = 4,
) -> dict:
    shards: dict[str, str] = dict(read_table(consensus_index_path)[["video", "path"]].itertuples(index=False))
    items = [
        {**item, "consensus": shards[item["video"]]}
        for item in videos_of(read_shot_records(shots_path, usable_only=True))
        if item["video"] in shards
    ]
    if not items:
        raise StageFailed(f"prune: the consensus index {consensus_index_path} lists no video; check that stage")
    options = params.model_dump(exclude={"max_failure_fraction"})
    with atomic_dir(out_dir) as tmp:
        rows = map_batches(
            prune_batch, items, batch_size, _crashed, out_dir=str(tmp), prune=options, root=str(Path.cwd())
        )
    table = shard_paths_in(pd.DataFrame(rows), out_dir)
    ok, failed = record_results("prune", table, index_path, failures_path, item="video")
    table_of_removals = removal_table(ok) if len(ok) else {}
    metrics = {"failed": len(failed), **table_of_removals}
    publish_metrics("prune", metrics, metrics_path)
    if table_of_removals:
        create_table_artifact(
            [{"rule": rule, **counts} for rule, counts in table_of_removals["removed"].items()],
            key="prune-removed",
            description="Frames, shots and videos each pruning rule removed (rules applied in this order)",
        )
    check_failure_fraction("prune", len(failed), len(items), params.max_failure_fraction, failures_path)
    if table_of_removals and not table_of_removals["frames_sampled"]:
        raise StageFailed(
            f"prune: every frame of the {len(ok)} videos was removed (see {metrics_path}); "
            "loosen the prune rules in params.yaml"
        )
    return metrics


def _run(args, params: Params) -> None:
    prune.with_options(task_runner=make_task_runner(params.runtime, "cpu"))(
        args.shots,
        args.consensus_index,
        args.out,
        args.index,
        args.failures,
        args.metrics,
        params.prune,
        batch_size=params.runtime.batch_size,
    )


def main() -> None:
    stage_main(
        "Prune and sample: the training frames and their soft masks.",
        {
            "shots": "shot records (.parquet, from the shots stage)",
            "consensus_index": "consensus stage index (.parquet)",
            "out": "folder for the per-video training shards",
            "index": "index table to write (.parquet, one row per video)",
            "failures": "failures report to write (.csv)",
            "metrics": "metrics JSON to write",
        },
        _run,
    )


if __name__ == "__main__":
    main()
