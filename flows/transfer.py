"""Stage ``transfer``: one Fast R-CNN setting, fine-tuned and scored (paper §6; ``motionmasks.transfer``).

DVC runs this stage once per entry of its matrix (trunk x fine-tuning depth,
written in dvc.yaml; the training-set size is ``transfer.train_size``), each
cached on its own, so one changed setting re-runs alone. Reads the proposals stage's
detection tables and shards; the ``motion`` trunk is the train stage's
ConvNet. Writes the setting's metrics (VOC AP per class and the mean, area
and 11-point); timings go to the log and a Prefect artifact, not into the
metrics DVC compares.
"""

from __future__ import annotations

if __name__ == "__main__":  # a stage process started by DVC: before the slow imports
    from flows.lifeline import die_with_parent
    from flows.prefect_api import report_to_project_api

    die_with_parent()  # never outlive the run
    report_to_project_api(".")  # DVC runs it in the project folder: its runs are recorded there

import argparse
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.stage import StageFailed, publish_metrics, stage_main
from motionmasks.detection import DetectionImage
from motionmasks.formats import read_detection_table, read_proposal_shard
from motionmasks.params import Params


def load_split(table: Path) -> tuple[list[DetectionImage], dict[str, Any]]:
    """A split's images and their proposals, as the proposals stage wrote them."""
    images, shards = read_detection_table(table)
    proposals: dict[str, Any] = {}
    for shard in sorted(set(shards)):
        proposals.update(read_proposal_shard(shard))
    return images, proposals


@flow(name="transfer", log_prints=True)
def transfer(
    train_table: Path,
    test_table: Path,
    trunk: str,
    depth: str,
    train_size: int | None,
    metrics_path: Path,
    params: Params,
    model_path: Path | None = None,
) -> dict:
    from motionmasks.transfer import RANDOM, TransferError, TransferSettings, run_transfer

    logger = get_run_logger()
    train_images, train_proposals = load_split(train_table)
    test_images, test_proposals = load_split(test_table)
    source: str | Path = RANDOM if trunk == "random" else (model_path or "")
    try:
        metrics, timing = run_transfer(
            train_images,
            train_proposals,
            test_images,
            test_proposals,
            trunk=source,
            depth=depth,
            train_size=train_size,
            settings=TransferSettings(**params.transfer.solver.model_dump()),
            random_like={"width": params.train.width, "batch_norm": params.train.batch_norm},
            log=logger.info,
        )
    except TransferError as exc:
        raise StageFailed(f"transfer: {exc}") from None
    metrics = {"trunk": trunk, **{k: v for k, v in metrics.items() if k != "trunk"}}
    publish_metrics(f"transfer-{trunk}-{depth}", metrics, metrics_path, timing)
    logger.info(
        "mAP %.3f (11-point %.3f); training %.1f images/s, test %.1f images/s",
        metrics["mAP"] or 0.0,
        metrics["mAP_11point"] or 0.0,
        timing["train_images_per_s"],
        timing["test_images_per_s"],
    )
    return metrics


def _run(args: argparse.Namespace, params: Params) -> None:
    transfer(
        args.train_table,
        args.test_table,
        args.trunk,
        args.depth,
        None if params.transfer.train_size == "all" else int(params.transfer.train_size),
        args.metrics,
        params,
        model_path=args.model,
    )


def main() -> None:
    # The setting's values come on the command line from dvc.yaml's matrix; paths as every stage's.
    setting = argparse.ArgumentParser(add_help=False)
    setting.add_argument("--trunk", required=True, choices=["motion", "random"])
    setting.add_argument("--depth", required=True, choices=["all", "c1", "c2", "c3", "c4", "c5"])
    known, rest = setting.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    stage_main(
        "Fine-tune and score one Fast R-CNN setting (trunk x depth).",
        {
            "train_table": "training set's detection table (.parquet, from the proposals stage)",
            "test_table": "test set's detection table (.parquet)",
            "model": "the mask ConvNet (the motion trunk)",
            "metrics": "the setting's metrics JSON to write",
        },
        lambda args, params: _run(argparse.Namespace(**vars(args), **vars(known)), params),
    )


if __name__ == "__main__":
    main()
