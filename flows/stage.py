"""What every stage flow shares: its command line (paths come from dvc.yaml,
values from params.yaml), its metrics file and Prefect artifact, and its
failures report."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from motionmasks.atomic import atomic_path, sweep_temporaries
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
        restore_previous_outputs(root)
        sys.exit(2)
    except BaseException:  # a crash or Ctrl-C: the traceback follows, after the outputs are back
        restore_previous_outputs(root)
        raise


def restore_previous_outputs(root: Path) -> None:
    """Put back the outputs that dvc.lock records for the stage DVC is running.

    DVC deletes a stage's outputs before it runs the command, so a failed
    ``dvc repro`` would otherwise leave the stage (and every stage reading it)
    nothing. The outputs it cached come from its cache; metrics (which git
    tracks, so DVC does not cache them) come from the copy its run cache kept.
    Outside DVC (no ``DVC_STAGE``), or for a stage never run here, nothing to do.
    """
    name = os.environ.get("DVC_STAGE")
    if not name:
        return
    problems, restored = [], 0
    try:
        from dvc.repo import Repo

        # DVC names the stage relative to the folder it runs it in: the project's
        with contextlib.chdir(root), Repo(str(root)) as repo:
            for stage in repo.stage.collect(name):
                for out in stage.outs:
                    if not (out.hash_info and out.hash_info.value):
                        continue  # never written by a successful run
                    try:
                        _restore_output(repo, out)
                        restored += 1
                    except Exception as exc:  # restoring must never hide the stage's own error
                        problems.append(f"{out}: {exc}")
    except Exception as exc:
        problems.append(str(exc))
    for problem in problems:
        print(f"{name}: a previous output could not be restored: {problem}", file=sys.stderr)
    if restored:
        print(f"{name}: {restored} previous output(s) back in place, as dvc.lock records them", file=sys.stderr)


def _restore_output(repo: Any, out: Any) -> None:
    if out.use_cache:
        out.checkout(force=True)
        return
    # An uncached output (metrics, plots) is in the cache only as the copy DVC's run cache
    # kept of it: a file, or a folder as a manifest of its files (DVC's cache layout).
    cache = repo.cache.local
    copy = Path(cache.oid_to_path(out.hash_info.value))
    if not copy.is_file():
        raise FileNotFoundError(f"not in the DVC cache (`git checkout -- {out}` restores it)")
    target = Path(out.fs_path)
    if not out.hash_info.isdir:
        with atomic_path(target) as tmp:
            shutil.copyfile(copy, tmp)
        return
    files = [(entry["relpath"], Path(cache.oid_to_path(entry["md5"]))) for entry in json.loads(copy.read_text())]
    missing = [relpath for relpath, source in files if not source.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of its files are not in the DVC cache, {missing[0]} first")
    for relpath, source in files:  # file by file: the folder must hold exactly what the manifest lists
        with atomic_path(target / relpath) as tmp:
            shutil.copyfile(source, tmp)
