"""The ``pipeline`` flow: run the DVC stages in dependency order, each through
DVC (``dvc repro --single-item``), so a stage whose inputs, code and params did
not change is skipped and the run says so. Each stage's outcome, duration,
reasons and metrics become a Prefect task run and artifacts.

One Prefect API serves the whole run: ``use_prefect_server`` reuses
``PREFECT_API_URL`` or the dashboard this project started (never whatever else
answers on its port), or starts one
temporary server and exports its address, so every stage process (started by
DVC) reports to it instead of starting its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.stage import artifact_key
from motionmasks.atomic import atomic_path

DASHBOARD_API = "http://127.0.0.1:4200/api"


class PipelineFailed(RuntimeError):
    def __init__(self, message: str, results: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.results = results or []  # the stages' outcome rows, for the run record


def _api_healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _dashboard_record(root: Path) -> Path:
    return root / ".prefect" / "dashboard.json"


def _started(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def record_dashboard(root: Path, pid: int, url: str) -> None:
    """Note that this project's ``motionmasks dashboard`` (process ``pid``) serves ``url``.

    The process's start time is kept too: a pid reused after a crash or a
    reboot is then not taken for the dashboard.
    """
    from motionmasks.formats import write_json

    write_json({"pid": pid, "started": _started(pid), "url": url}, _dashboard_record(root))


def forget_dashboard(root: Path, pid: int) -> None:
    record = _dashboard_record(root)
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError, json.JSONDecodeError):
        if json.loads(record.read_text())["pid"] == pid:
            record.unlink()


def project_dashboard(root: Path) -> str | None:
    """The API of the dashboard this project started, if it still runs and answers; else None.

    Only a server this project started counts: whatever else listens on port
    4200 (another user's, another program) never receives this run's logs.
    """
    import psutil

    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, psutil.Error):
        record = json.loads(_dashboard_record(root).read_text())
        pid, url = int(record["pid"]), str(record["url"])
        if _started(pid) == float(record["started"]) and _api_healthy(url):  # psutil.NoSuchProcess when gone
            return url
    return None


@contextlib.contextmanager
def use_prefect_server(root: Path) -> Iterator[str]:
    """Yield the API URL that this run and all its stage processes report to."""
    url = os.environ.get("PREFECT_API_URL")  # named by the user
    if not url:
        url = project_dashboard(root)  # this project's `motionmasks dashboard` is running: show the run there
    if url:
        os.environ["PREFECT_API_URL"] = url
        yield url
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()  # the default instance, so Prefect itself reuses it
    server.start()
    if server.server_process is not None:  # killed with this run, even by SIGKILL
        from flows.lifeline import reap_when_gone

        reap_when_gone(os.getpid(), server.server_process.pid)
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)  # send the last logs before the server goes
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in _flatten(sub, f"{prefix}.{key}").items()}
    return {prefix: value}


def _param_changes(group: str, recorded: Any, current: Any) -> list[str]:
    """'shots.min_shot: 10 -> 15' for each key of a params group that changed since the last run."""
    old, new = _flatten(recorded, group), _flatten(current, group)
    return [
        f"{key}: {old.get(key, '(absent)')} -> {new.get(key, '(absent)')}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def _describe_changes(entries: list[Any], locked_params: dict | None = None, params: dict | None = None) -> list[str]:
    reasons = []
    for entry in entries:
        if isinstance(entry, str):
            reasons.append(entry)
            continue
        for kind, changes in entry.items():
            if isinstance(changes, dict):
                for path, what in changes.items():
                    if isinstance(what, dict):  # params: {group or key: "modified" | "new" | "deleted"}
                        for key, how in what.items():
                            recorded = (locked_params or {}).get(path, {}).get(key)
                            if how == "modified" and recorded is not None and params is not None:
                                details = _param_changes(key, recorded, params.get(key))
                                reasons.extend(f"changed param {d}" for d in details)
                            else:
                                reasons.append(f"{kind}: {path}: {key} {how}")
                    else:
                        reasons.append(f"{kind}: {path} {what}")
            else:
                reasons.append(f"{kind}: {changes}")
    return reasons


def stage_plan(root: Path, targets: list[str] | None = None) -> list[dict[str, Any]]:
    """Stages in dependency order with why each would run now.

    Each entry: name, reasons (empty = up to date), upstream (names), metrics
    (paths). ``targets`` restricts the plan to those stages and their upstream.
    """
    from dvc.repo import Repo
    from dvc.repo.reproduce import get_active_graph, plan_repro

    params_file = root / "params.yaml"
    current_params = yaml.safe_load(params_file.read_text()) if params_file.is_file() else {}
    lock_file = root / "dvc.lock"
    locked = (yaml.safe_load(lock_file.read_text()) or {}).get("stages", {}) if lock_file.is_file() else {}
    with Repo(str(root)) as repo, _dvc_lock_is_busy():
        graph = get_active_graph(repo.index.graph)
        stages = [s for s in repo.index.stages if targets is None or s.addressing in targets]
        if targets:
            unknown = set(targets) - {s.addressing for s in stages}
            if unknown:
                known = ", ".join(s.addressing for s in repo.index.stages)
                raise PipelineFailed(f"unknown stage(s) {', '.join(sorted(unknown))}; stages are: {known}")
        plan = []
        changed = repo.status()  # every stage's own changes in one pass (one call per stage took 6x longer)
        for stage in plan_repro(graph, stages):
            if stage.addressing in locked:
                changes = changed.get(stage.addressing, [])
                reasons = _describe_changes(changes, locked[stage.addressing].get("params"), current_params)
            else:
                reasons = ["never run here (not in dvc.lock)"]
            plan.append(
                {
                    "name": stage.addressing,
                    "reasons": reasons,
                    "upstream": [s.addressing for s in graph.successors(stage)],
                    "metrics": [str(Path(out.fs_path).relative_to(root.resolve())) for out in stage.outs if out.metric],
                }
            )
        return plan


@contextlib.contextmanager
def _dvc_lock_is_busy() -> Iterator[None]:
    from dvc.lock import LockError

    try:
        yield
    except LockError:
        raise PipelineFailed(
            "a DVC command (dvc repro, dvc exp run, ...) holds this project's lock; wait for it "
            "to finish, then run again (its outputs are safe)"
        ) from None


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
        with Repo(str(root)) as repo, _dvc_lock_is_busy():
            # the project's choice is core.autostage false: no "git add dvc.lock" hint after every stage
            repo.scm_context.quiet = True
            uncached = _uncached_outputs(repo, name)
            ran = repo.reproduce(name, single_item=True, force=force)
        outcome = "ran" if ran else "skipped (up to date)"
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
        "why": ("; ".join(reasons) or "forced") if outcome == "ran" else "",
        "metrics": metrics,
    }


def _counts(rows: list[dict[str, Any]]) -> tuple[int, int, int]:
    outcomes = [r["outcome"] for r in rows]
    return (
        outcomes.count("ran"),
        sum(o.startswith("skipped") for o in outcomes),
        len(outcomes) - outcomes.count("ran") - sum(o.startswith("skipped") for o in outcomes),
    )


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
        upstream_ran = [r["stage"] for r in results if r["stage"] in step["upstream"] and r["outcome"] == "ran"]
        result = run_stage(root, step["name"], step["reasons"], forced, step["metrics"], upstream_ran)
        if result["outcome"] == "failed":
            failed.add(step["name"])
        results.append(result)
    rows = [{k: v for k, v in r.items() if k != "metrics"} for r in results]
    create_table_artifact(rows, key="pipeline-stages", description="Outcome and duration of each stage")
    lines = "\n".join(f"| {r['stage']} | {r['outcome']} | {r['seconds']} | {r['why']} |" for r in rows)
    create_markdown_artifact(f"| stage | outcome | seconds | why |\n|---|---|---|---|\n{lines}", key="pipeline-summary")
    # the table itself is printed once, by the command that started the run (and is an artifact here)
    logger.info("%d stage(s) ran, %d up to date, %d failed", *_counts(rows))
    if failed:
        raise PipelineFailed(f"stage(s) failed: {', '.join(sorted(failed))}; see their logs above", results)
    return results
