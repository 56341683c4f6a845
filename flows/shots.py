"""Stage ``shots``: split every fetched video into shots (appearance-based,
unsupervised cut detection; see ``motionmasks.shots``).

Writes the shot records (``motionmasks.formats.ShotRecord``: one row per part of
a shot, with its source, frame range, frame size and working size), with the
reference rules for too-short shots (listed, status ``too_short``) and long
ones (cut into parts of at most ``shots.max_shot`` frames), and a failures
report. Every later stage reads these records; none re-derives them.
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
from prefect import flow, get_run_logger

from flows.fanout import make_task_runner, map_batches
from flows.stage import check_failure_fraction, publish_failures, publish_metrics, stage_main
from motionmasks.formats import ShotRecord, read_table, write_shot_records
from motionmasks.params import Params, ShotsParams
from motionmasks.segment import Segmenter
from tasks.shots import split_batch


def _crashed(item: dict, reason: str) -> dict:
    return {"video": item["video"], "status": "failed", "reason": reason, "records": [], "seconds": 0.0}


@flow(name="shots", log_prints=True)
def shots(
    fetched_path: Path,
    out_path: Path,
    failures_path: Path,
    metrics_path: Path,
    params: ShotsParams,
    batch_size: int = 4,
) -> dict:
    logger = get_run_logger()
    start = time.perf_counter()
    fetched = read_table(fetched_path)
    items = [{"video": r.id, "path": r.path} for r in fetched.itertuples()]
    segmenter = Segmenter(**Segmenter.shot_settings(params))
    results = map_batches(split_batch, items, batch_size, _crashed, segmenter=segmenter, root=str(Path.cwd()))
    records = [ShotRecord(**record) for r in results for record in r["records"]]
    write_shot_records(out_path, records)
    table = pd.DataFrame(
        [{"video": r.video, "shot": r.shot, "part": r.part, "status": r.status} for r in records],
        columns=["video", "shot", "part", "status"],
    )
    per_shot = table.drop_duplicates(["video", "shot"])
    failed = pd.DataFrame([{"item": r["video"], "reason": r["reason"]} for r in results if r["status"] != "ok"])
    publish_failures("shots", failed, failures_path)
    for row in failed.itertuples():
        logger.warning("shots failed: %s", row.reason)
    frames_of = dict(zip(fetched["id"], fetched["frames"]))  # a lookup, not a scan per video
    analysed = sum(int(frames_of[r["video"]]) for r in results if r["status"] == "ok")
    busy = sum(r["seconds"] for r in results)
    metrics = {
        "videos": len(items),
        "failed": len(failed),
        "shots": len(per_shot),
        "shots_usable": int((per_shot["status"] == "ok").sum()),
        "shots_too_short": int((per_shot["status"] == "too_short").sum()),
        "parts_usable": int((table["status"] == "ok").sum()),
        "frames": analysed,
    }
    timing = {
        "seconds": time.perf_counter() - start,
        "frames_per_second_per_worker": round(analysed / busy, 1) if busy else 0.0,
    }
    publish_metrics("shots", metrics, metrics_path, timing)
    check_failure_fraction("shots", len(failed), len(items), params.max_failure_fraction, failures_path)
    return metrics


def _run(args, params: Params) -> None:
    shots.with_options(task_runner=make_task_runner(params.runtime, "cpu"))(
        args.fetched,
        args.out,
        args.failures,
        args.metrics,
        params.shots,
        batch_size=params.runtime.batch_size,
    )


def main() -> None:
    stage_main(
        "Split fetched videos into shots.",
        {
            "fetched": "table of fetched videos (.parquet, from the download stage)",
            "out": "shot table to write (.parquet)",
            "failures": "failures report to write (.csv)",
            "metrics": "metrics JSON to write",
        },
        _run,
    )


if __name__ == "__main__":
    main()
