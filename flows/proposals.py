"""Stage ``proposals``: read the detection dataset and compute its region proposals once.

Reads ``detection.train`` and ``detection.test`` (VOC or COCO; ``motionmasks.detection``
repairs and counts what is wrong in them), runs selective search on every image
(``motionmasks.proposals``, batches over all cores or a Dask cluster) and
writes, per split, the typed record the transfer stage reads (a detection
table: each image, its objects and its proposal shard) plus the proposal
shards. Metrics: what the readers repaired, proposals per image, and the
proposals' recall (objects some proposal covers at IoU 0.5 and 0.7).
"""

from __future__ import annotations

if __name__ == "__main__":  # a stage process started by DVC: before the slow imports
    from flows.lifeline import die_with_parent
    from flows.prefect_api import report_to_project_api

    die_with_parent()  # never outlive the run
    report_to_project_api(".")  # DVC runs it in the project folder: its runs are recorded there

from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger

from flows.fanout import batched, make_task_runner
from flows.stage import StageFailed, check_failure_fraction, publish_failures, publish_metrics, stage_main
from motionmasks.atomic import atomic_dir
from motionmasks.detection import DatasetError, load_dataset
from motionmasks.formats import write_detection_table
from motionmasks.params import DetectionParams, Params, ProposalsParams
from motionmasks.redact import redact_text
from tasks.proposals import proposals_batch

SPLITS = ("train", "test")
IMAGES_PER_SHARD = 32


@flow(name="proposals", log_prints=True)
def proposals(
    out_dir: Path,
    tables: dict[str, Path],
    failures_path: Path,
    metrics_path: Path,
    dataset: DetectionParams,
    params: ProposalsParams,
) -> dict:
    logger = get_run_logger()
    settings = params.model_dump(exclude={"max_failure_fraction"})
    metrics: dict = {}
    failures: list[dict] = []
    outcomes: dict[str, list[dict]] = {}
    total = 0
    with atomic_dir(out_dir) as tmp:
        futures = {}
        for split in SPLITS:
            location = getattr(dataset, split)
            try:
                images, report = load_dataset(location)
            except DatasetError as exc:
                raise StageFailed(f"proposals: detection.{split}: {exc}") from None
            metrics[split] = {"dataset": str(location), **report.as_metrics()}
            failures += [{"item": f"{split}/{item}", "reason": redact_text(reason)} for item, reason in report.failures]
            total += len(images) + len(report.failures)
            futures[split] = [
                (batch, proposals_batch.submit(batch, str(tmp / f"{split}-{k:05d}.npz"), settings, str(Path.cwd())))
                for k, batch in enumerate(batched(images, IMAGES_PER_SHARD))
            ]
        for split, submitted in futures.items():
            rows: list[dict] = []
            for batch, future in submitted:
                try:
                    rows += future.result()
                except Exception as exc:  # a crashed batch must not lose the others
                    reason = redact_text(f"batch crashed: {type(exc).__name__}: {exc}")
                    rows += [{"image": i.image, "record": i, "status": "failed", "reason": reason} for i in batch]
            outcomes[split] = rows
    for split, rows in outcomes.items():
        ok = [r for r in rows if r["status"] == "ok"]
        failures += [{"item": f"{split}/{r['image']}", "reason": r["reason"]} for r in rows if r["status"] != "ok"]
        write_detection_table(
            tables[split], [r["record"] for r in ok], [str(out_dir / Path(r["shard"]).name) for r in ok]
        )
        objects = sum(r["objects"] for r in ok)
        metrics[split].update(
            images_with_proposals=len(ok),
            proposals_per_image=round(sum(r["proposals"] for r in ok) / max(len(ok), 1), 2),
            recall_50=round(sum(r["covered_50"] for r in ok) / max(objects, 1), 4),
            recall_70=round(sum(r["covered_70"] for r in ok) / max(objects, 1), 4),
        )
        seconds = sum(r.get("seconds", 0.0) for r in rows)
        logger.info("%s: %d images, %.2f images/s per worker", split, len(rows), len(rows) / max(seconds, 1e-9))
    for failure in failures:
        logger.warning("proposals failed: %s: %s", failure["item"], failure["reason"])
    publish_failures("proposals", pd.DataFrame(failures), failures_path)
    metrics["failed"] = len(failures)
    publish_metrics("proposals", metrics, metrics_path)
    check_failure_fraction("proposals", len(failures), total, params.max_failure_fraction, failures_path)
    if not outcomes["train"] or not any(r["status"] == "ok" for r in outcomes["train"]):
        raise StageFailed(f"proposals: no training image could be read; see {failures_path}")
    return metrics


def _run(args, params: Params) -> None:
    proposals.with_options(task_runner=make_task_runner(params.runtime, "cpu"))(
        args.out,
        {"train": args.train_table, "test": args.test_table},
        args.failures,
        args.metrics,
        params.detection,
        params.proposals,
    )


def main() -> None:
    stage_main(
        "Read the detection dataset and compute selective-search proposals for every image.",
        {
            "out": "folder for the proposal shards",
            "train_table": "detection table of the training set to write (.parquet)",
            "test_table": "detection table of the test set to write (.parquet)",
            "failures": "failures report to write (.csv)",
            "metrics": "metrics JSON to write",
        },
        _run,
    )


if __name__ == "__main__":
    main()
