"""What every stage flow shares: its command line (paths come from dvc.yaml,
values from params.yaml), its metrics file and Prefect artifact, and its
failures report."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from motionmasks.atomic import sweep_temporaries
from motionmasks.formats import ShotRecord, write_json, write_table
from motionmasks.params import Params, ParamsError, load_params

FAILURE_COLUMNS = ["item", "reason"]


class StageFailed(RuntimeError):
    """The stage as a whole failed (too many items failed, or nothing to do)."""


def artifact_key(stage: str, what: str) -> str:
    # Prefect keys allow lowercase letters, digits and dashes only (matrix stages are named transfer@a-b-c).
    return re.sub(r"[^a-z0-9-]", "-", f"{stage}-{what}".lower())


def publish_metrics(stage: str, metrics: dict[str, Any], path: Path, timing: dict[str, float] | None = None) -> None:
    """Write the stage's metrics JSON (what DVC compares) and show it, with ``timing``, in Prefect.

    Timings never enter the JSON: they differ run to run, and `dvc metrics diff`,
    `dvc exp show` and CI's reproduction check compare results. They go to the
    log and to the artifact instead.
    """
    write_json(metrics, path)
    rows = [{"metric": k, "value": v} for k, v in sorted(metrics.items()) if not isinstance(v, (dict, list))]
    timing = {k: round(float(v), 3) for k, v in (timing or {}).items()}
    rows += [{"metric": f"timing: {k}", "value": v} for k, v in timing.items()]
    create_table_artifact(rows, key=artifact_key(stage, "metrics"), description=f"Metrics of stage `{stage}`")
    if timing:
        from prefect import get_run_logger

        get_run_logger().info("%s timing: %s", stage, ", ".join(f"{k} {v}" for k, v in timing.items()))


def publish_failures(stage: str, failures: pd.DataFrame, path: Path) -> None:
    """Write the failures report (CSV, one row per failed item) and show it in Prefect."""
    failures = (
        failures.reindex(columns=FAILURE_COLUMNS) if not failures.empty else pd.DataFrame(columns=FAILURE_COLUMNS)
    )
    write_table(failures, path)
    if not failures.empty:
        lines = "\n".join(f"| {r.item} | {str(r.reason).replace('|', '/')} |" for r in failures.head(200).itertuples())
        create_markdown_artifact(
            f"# {len(failures)} item(s) failed in `{stage}`\n\nFull list: `{path}`\n\n| item | reason |\n|---|---|\n{lines}",
            key=artifact_key(stage, "failures"),
        )


def record_results(
    stage: str, table: pd.DataFrame, index_path: Path, failures_path: Path, item: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split per-item result rows (with ``status`` and ``reason``) into the
    stage's index table (the ok rows) and its failures report; log each failure."""
    from prefect import get_run_logger

    # Timings stay out of the index: it is a DVC dependency of the next stage,
    # which must not re-run because a fetch took longer this time.
    ok = table[table["status"] == "ok"].drop(columns=["status", "reason", "seconds"], errors="ignore")
    ok = ok.reset_index(drop=True)
    write_table(ok, index_path)
    failed = table.loc[table["status"] != "ok", [item, "reason"]].rename(columns={item: "item"})
    publish_failures(stage, failed, failures_path)
    logger = get_run_logger()
    for row in failed.itertuples():
        logger.warning("%s failed: %s", stage, row.reason)
    return ok, failed


def shard_paths_in(table: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
    """Point ``path`` at the final folder once a temporary one was swapped into place."""
    return table.assign(path=[str(out_dir / Path(p).name) if p else "" for p in table["path"]])


def videos_of(records: list[ShotRecord]) -> list[dict[str, Any]]:
    """Per-video work items of the stages after ``shots``: ``{"video", "records"}``, sorted by video."""
    by_video: dict[str, list[ShotRecord]] = {}
    for record in records:
        by_video.setdefault(record.video, []).append(record)
    return [{"video": video, "records": by_video[video]} for video in sorted(by_video)]


def check_failure_fraction(stage: str, failed: int, total: int, limit: float, report: Path) -> None:
    if total == 0:
        raise StageFailed(f"{stage}: no items to process; check the stage's input")
    if failed / total > limit:
        raise StageFailed(
            f"{stage}: {failed} of {total} items failed (more than the allowed fraction {limit}); "
            f"see {report} for each item's reason"
        )


def project_tag(root: Path) -> str:
    """The Prefect tag of every flow run of the project at ``root``: two checkouts on one
    machine (or one dashboard) are told apart by their folder."""
    return f"project:{Path(root).resolve()}"


def stage_main(description: str, paths: dict[str, str], run: Callable[[argparse.Namespace, Params], Any]) -> None:
    """Parse ``--params`` plus the stage's path arguments and run the stage.

    ``paths`` maps argument name -> help. A bad params.yaml or a failed stage
    prints one clear message and exits non-zero (DVC then keeps no outputs).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="the parameters file (default: params.yaml)")
    for name, help_text in paths.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, type=Path, help=help_text)
    args = parser.parse_args()
    logging.getLogger("prefect").setLevel(os.environ.get("MOTIONMASKS_LOG_LEVEL", "INFO"))
    for name in paths:  # a killed earlier run's temporaries sit beside (or inside) the paths
        path = getattr(args, name)
        for folder in (path.parent, path):
            for leftover in sweep_temporaries(folder):
                print(f"removed {leftover}: left by a run that was killed", file=sys.stderr)
    from prefect import tags

    root = Path.cwd()  # DVC runs the stage in the project folder
    try:
        params = load_params(args.params, complete=True)
        with tags(project_tag(root)):  # the API was chosen before Prefect was imported (flows.prefect_api)
            run(args, params)
    except (ParamsError, StageFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
