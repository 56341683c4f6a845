"""The ``pipeline`` flow: run the DVC stages in dependency order, each through
DVC (``dvc repro --single-item``), so a stage whose inputs, code and params did
not change is skipped and the run says so. Each stage's outcome, duration,
reasons and metrics become a Prefect task run and artifacts.

One Prefect API serves the whole run (``flows.prefect_api.prefect_api``,
entered by ``motionmasks run``): its address is exported, so every stage
process (started by DVC) reports to it instead of starting its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.plan import PipelineFailed, dvc_lock_is_busy, stage_plan
from flows.stage import artifact_key
from motionmasks.atomic import atomic_path


def read_metrics(root: Path, paths: list[str]) -> dict[str, Any]:
    metrics = {}
    for path in paths:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            metrics.update(json.loads((root / path).read_text()))
    return metrics


def _uncached_outputs(repo: Any, name: str) -> dict[Path, bytes]:
    """The stage's outputs that DVC does not cache (metrics, failure reports): their bytes now."""
    kept = {}
    for stage in repo.stage.collect(name):
        for out in stage.outs:
            path = Path(out.fs_path)
            if not out.use_cache and path.is_file():
                kept[path] = path.read_bytes()
    return kept


def _restore_outputs(root: Path, name: str, uncached: dict[Path, bytes], logger: Any) -> None:
    """Put a failed stage's previous outputs back: cached ones from DVC's cache (dvc.lock still
    names them), the others (metrics, failure reports: small files) from ``uncached``.

    DVC removes a stage's outputs before running it; without this a failed run
    would leave none, and every stage after it nothing to read.
    """
    from dvc.repo import Repo

    for path, data in uncached.items():
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    try:
        with Repo(str(root)) as repo:
            repo.checkout(targets=[name], force=True)
    except Exception as exc:  # nothing recorded yet (a first run), or the cache lacks them
        logger.warning("stage %s: its previous outputs could not be restored (%s)", name, exc)
        return
    logger.warning("stage %s: its previous outputs are back in place", name)


RESTORED = "restored (run cache)"


class _RunCacheHits(logging.Handler):
    """Notes the stages DVC restored from its run cache instead of running.

    DVC says so only in its log ("Stage 'x' is cached - skipping run, checking
    out outputs"); ``Repo.reproduce`` returns restored and run stages alike.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.restored = False

    def emit(self, record: logging.LogRecord) -> None:
        self.restored = self.restored or "is cached - skipping run" in record.getMessage()


@contextlib.contextmanager
def _watch_run_cache() -> Any:
    hits = _RunCacheHits()
    dvc_logger = logging.getLogger("dvc.stage.cache")
    level = dvc_logger.level
    if not dvc_logger.isEnabledFor(logging.INFO):  # DVC's own logging set quieter: still hear this
        dvc_logger.setLevel(logging.INFO)
    dvc_logger.addHandler(hits)
    try:
        yield hits
    finally:
        dvc_logger.removeHandler(hits)
        dvc_logger.setLevel(level)


@task(task_run_name="stage-{name}")
def run_stage(
    root: Path, name: str, reasons: list[str], force: bool, metric_paths: list[str], upstream_ran: list[str]
) -> dict[str, Any]:
    """Reproduce one stage through DVC; return its outcome row.

    ``reasons`` are what changed before the run started; a stage with none runs
    only if a stage it reads from (``upstream_ran``) wrote new outputs, and says so.
    """
    from dvc.repo import Repo

    logger = get_run_logger()
    start = time.perf_counter()
    if reasons or force:
        logger.info("stage %s runs: %s", name, "; ".join(reasons) or "forced")
    elif upstream_ran:
        reasons = [f"upstream ran: {', '.join(upstream_ran)}"]
    uncached: dict[Path, bytes] = {}
    try:
        with Repo(str(root)) as repo, dvc_lock_is_busy():
            # the project's choice is core.autostage false: no "git add dvc.lock" hint after every stage
            repo.scm_context.quiet = True
            uncached = _uncached_outputs(repo, name)
            with _watch_run_cache() as hits:
                ran = repo.reproduce(name, single_item=True, force=force)
        # a parameter value (or input) already run here: DVC put that run's outputs back
        outcome = (RESTORED if hits.restored else "ran") if ran else "skipped (up to date)"
    except Exception as exc:
        logger.error("stage %s failed: %s (%s)", name, exc, exc.__cause__ or "see the stage's log above")
        _restore_outputs(root, name, uncached, logger)
        return {
            "stage": name,
            "outcome": "failed",
            "seconds": round(time.perf_counter() - start, 2),
            "why": str(exc.__cause__ or exc),
            "metrics": {},
        }
    metrics = read_metrics(root, metric_paths)
    logger.info("stage %s: %s in %.1f s", name, outcome, time.perf_counter() - start)
    if metrics:
        create_table_artifact(
            [{"metric": k, "value": v} for k, v in sorted(metrics.items()) if not isinstance(v, (dict, list))],
            key=artifact_key("pipeline", f"{name}-metrics"),
            description=f"Metrics of stage `{name}` after this pipeline run",
        )
    return {
        "stage": name,
        "outcome": outcome,
        "seconds": round(time.perf_counter() - start, 2),
        "why": ("; ".join(reasons) or "forced") if outcome != "skipped (up to date)" else "",
        "metrics": metrics,
    }


def _counts(rows: list[dict[str, Any]]) -> tuple[int, int, int]:
    outcomes = [r["outcome"] for r in rows]
    ran = sum(o in ("ran", RESTORED) for o in outcomes)
    skipped = sum(o.startswith("skipped") for o in outcomes)
    return ran, skipped, len(outcomes) - ran - skipped


@flow(name="pipeline", log_prints=True)
def pipeline(
    root: Path, targets: list[str] | None = None, force: bool = False, plan: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Run the stages of ``plan`` (default: :func:`stage_plan` of ``targets``) in order, each through DVC."""
    logger = get_run_logger()
    # DVC prints its messages through its own handlers; passed on to the root logger as well,
    # every one of them would appear twice.
    logging.getLogger("dvc").propagate = False
    # DVC runs each stage's `python -m flows.<stage>`: make that the same Python.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    results: list[dict[str, Any]] = []
    failed: set[str] = set()
    for step in plan if plan is not None else stage_plan(root, targets):
        blocked = [u for u in step["upstream"] if u in failed]
        if blocked:
            failed.add(step["name"])
            results.append(
                {
                    "stage": step["name"],
                    "outcome": "not run (upstream failed)",
                    "seconds": 0.0,
                    "why": ", ".join(blocked),
                    "metrics": {},
                }
            )
            continue
        # --force applies to the stages asked for, not to everything they need
        forced = force and (targets is None or step["name"] in targets)
        upstream_ran = [
            r["stage"] for r in results if r["stage"] in step["upstream"] and r["outcome"] in ("ran", RESTORED)
        ]
        result = run_stage(root, step["name"], step["reasons"], forced, step["metrics"], upstream_ran)
        if result["outcome"] == "failed":
            failed.add(step["name"])
        results.append(result)
    rows = [{k: v for k, v in r.items() if k != "metrics"} for r in results]
    create_table_artifact(rows, key="pipeline-stages", description="Outcome and duration of each stage")
    lines = "\n".join(f"| {r['stage']} | {r['outcome']} | {r['seconds']} | {r['why']} |" for r in rows)
    create_markdown_artifact(f"| stage | outcome | seconds | why |\n|---|---|---|---|\n{lines}", key="pipeline-summary")
    # the table itself is printed once, by the command that started the run (and is an artifact here)
    logger.info("%d stage(s) ran or were restored, %d up to date, %d failed", *_counts(rows))
    if failed:
        raise PipelineFailed(f"stage(s) failed: {', '.join(sorted(failed))}; see their logs above", results)
    return results
