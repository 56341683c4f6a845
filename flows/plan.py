"""What a run would do, asked of DVC without running anything: the stages in
dependency order, each with why it would run (or that it is up to date).

No Prefect here: ``motionmasks run`` plans before it knows whether it needs a
Prefect server at all, and must choose that server before Prefect is imported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml


class PipelineFailed(RuntimeError):
    def __init__(self, message: str, results: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.results = results or []  # the stages' outcome rows, for the run record


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
    with Repo(str(root)) as repo, dvc_lock_is_busy():
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
def dvc_lock_is_busy() -> Iterator[None]:
    from dvc.lock import LockError

    try:
        yield
    except LockError:
        raise PipelineFailed(
            "a DVC command (dvc repro, dvc exp run, ...) holds this project's lock; wait for it "
            "to finish, then run again (its outputs are safe)"
        ) from None
