"""Stage ``train``: the mask ConvNet learns the motion masks from single frames
(paper §5; ``motionmasks.train``, networks in ``models/``).

Reads the prune stage's shards; writes the model of the best epoch on the
held-out videos (a DVC output), per-epoch metrics and plots through dvclive,
and a summary metrics file. The resume state lives in a folder DVC keeps
between runs (``persist``), so a killed run goes on from its last epoch.

Several GPUs (or processes): start this module under ``torchrun``; only rank
0 reports to Prefect and writes files.
"""

from __future__ import annotations

if __name__ == "__main__":  # a stage process started by DVC: before the slow imports
    from flows.lifeline import die_with_parent
    from flows.prefect_api import report_to_project_api

    die_with_parent()  # never outlive the run
    report_to_project_api(".")  # DVC runs it in the project folder: its runs are recorded there

import os
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from flows.stage import StageFailed, publish_metrics, stage_main
from motionmasks.formats import read_table
from motionmasks.params import Params, TrainParams


@flow(name="train", log_prints=True)
def train(
    prune_index_path: Path,
    model_path: Path,
    state_dir: Path,
    live_dir: Path,
    metrics_path: Path,
    params: TrainParams,
    loader_workers: int = 0,
) -> dict:
    from motionmasks.train import TrainingError
    from motionmasks.train import train as train_masknet

    logger = get_run_logger()
    index = read_table(prune_index_path)
    shards = [p for p in index["path"] if p] if "path" in index else []
    if not shards:
        raise StageFailed(f"train: {prune_index_path} lists no training shard; check the prune stage's metrics")
    progress = create_progress_artifact(0.0, key="train-progress", description="Epochs done (%)")
    assert isinstance(progress, UUID)  # called from a synchronous flow: the id itself, not a coroutine

    def on_epoch(row: dict[str, Any]) -> None:
        update_progress_artifact(progress, 100.0 * row["epoch"] / params.epochs)

    try:
        summary = train_masknet(
            shards,
            model_path,
            state_dir,
            params,
            live_dir=live_dir,
            loader_workers=loader_workers,
            log=logger.info,
            on_epoch=on_epoch,
        )
    except TrainingError as exc:
        raise StageFailed(f"train: {exc}") from None
    publish_metrics("train", summary, metrics_path)
    return summary


def _run(args, params: Params) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        train(
            args.prune_index,
            args.model,
            args.state,
            args.live,
            args.metrics,
            params.train,
            loader_workers=params.runtime.loader_workers,
        )
    else:  # another torchrun process: the same training, without Prefect or files
        from motionmasks.train import train as train_masknet

        shards = [p for p in read_table(args.prune_index)["path"] if p]
        train_masknet(shards, args.model, args.state, params.train, loader_workers=params.runtime.loader_workers)


def main() -> None:
    stage_main(
        "Train the mask ConvNet on the pruned frames and their motion masks.",
        {
            "prune_index": "prune stage index (.parquet)",
            "model": "the trained model to write (.pt)",
            "state": "folder for the resume state (kept between runs)",
            "live": "folder for the per-epoch metrics and plots (dvclive)",
            "metrics": "summary metrics JSON to write",
        },
        _run,
    )


if __name__ == "__main__":
    main()
