"""Did this run reproduce the committed results? (``motionmasks verify``)

After ``make run`` in a fresh clone, compare what the run wrote with what git
holds at a revision (default ``HEAD``):

- every tracked metrics and plots file (``metrics/``, ``plots/``): the same
  keys, columns and strings; numbers equal within the tolerance of
  :data:`TOLERANCES` (the first rule whose pattern matches the file, and the
  key where one is given);
- ``dvc.lock``: every stage's command, params and dependency hashes the same;
  output hashes the same too, except for the stages in
  :data:`FLOAT_STAGES`, whose outputs come from training networks and differ in
  their last bits between CPUs (a dependency may differ only where it is such
  an output).

Everything is compared on this machine's files: nothing is run.
"""

from __future__ import annotations

import fnmatch
import io
import json
import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

# Stages whose outputs come from training a network: floating point sums in a different
# order on another CPU change their weights slightly, so their output hashes may differ.
FLOAT_STAGES = ("train", "evaluate", "transfer", "transfer_summary")


@dataclass(frozen=True)
class Tolerance:
    files: str  # fnmatch pattern of a tracked path
    keys: str  # regular expression the value's key must match in full (JSON: dotted path; tables: the column)
    absolute: float
    relative: float = 0.0  # of the committed value; the larger of the two bounds applies


# First match wins. Exact everywhere except what a trained network decides: the
# ConvNet's losses, IoUs and chosen epoch and threshold, its masks' scores, and
# detection APs. Differences across CPUs grow over hundreds of SGD steps and the
# toy default's numbers are small, so these bounds are loose; a real regression
# (a changed stage, a broken loader) moves them further, and every other number,
# and every hash upstream of training, must match exactly.
TRAINED = 0.05
TOLERANCES = (
    Tolerance("metrics/train*", "(.*\\.)?(best_epoch|step|threshold)", math.inf),
    Tolerance("metrics/train*", "(?!.*(frames|videos|epochs)$).*", TRAINED, relative=0.1),
    Tolerance("metrics/evaluate.json", ".*student.*", TRAINED),
    Tolerance("plots/evaluate_per_video.csv", "student.*", TRAINED),
    Tolerance("metrics/transfer/*", ".*(AP|loss).*", TRAINED),
    Tolerance("metrics/transfer_summary.json", ".*", TRAINED),
    Tolerance("plots/transfer_map.csv", ".*", TRAINED),
)
EXACT = 1e-9  # everything else: equal but for the last bits of a float written as text


def tolerance_for(path: str, key: str, committed: float) -> float:
    """How far a value may be from the committed one (``key`` without list indices)."""
    for rule in TOLERANCES:
        if fnmatch.fnmatch(path, rule.files) and re.fullmatch(rule.keys, key):
            return max(rule.absolute, rule.relative * abs(committed))
    return EXACT


def _committed(root: Path, revision: str, path: str) -> bytes | None:
    shown = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=root, capture_output=True)
    return shown.stdout if shown.returncode == 0 else None


def tracked_results(root: Path, revision: str) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", revision, "--", "metrics", "plots"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in listed.stdout.splitlines() if line]


def _compare_values(path: str, key: str, committed: Any, now: Any, problems: list[str]) -> None:
    if isinstance(committed, dict) and isinstance(now, dict):
        if set(committed) != set(now):
            problems.append(f"{path}: {key or 'top level'} keys differ: {sorted(set(committed) ^ set(now))}")
        for k in sorted(set(committed) & set(now)):
            _compare_values(path, f"{key}.{k}" if key else str(k), committed[k], now[k], problems)
    elif isinstance(committed, list) and isinstance(now, list):
        if len(committed) != len(now):
            problems.append(f"{path}: {key}: {len(committed)} entries committed, {len(now)} now")
        for i, (a, b) in enumerate(zip(committed, now)):
            _compare_values(path, f"{key}[{i}]", a, b, problems)
    elif _is_number(committed) and _is_number(now):
        allowed = tolerance_for(path, re.sub(r"\[\d+\]", "", key), float(committed))
        if not _close(float(committed), float(now), allowed):
            problems.append(f"{path}: {key} = {now}, committed {committed} (tolerance {allowed:g})")
    elif committed != now:
        problems.append(f"{path}: {key} = {now!r}, committed {committed!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _close(a: float, b: float, allowed: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= allowed


def _read_table(data: bytes, path: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), sep="\t" if path.endswith(".tsv") else ",")


def compare_file(root: Path, revision: str, path: str) -> list[str]:
    committed = _committed(root, revision, path)
    current = root / path
    if committed is None:
        return []
    if not current.is_file():
        return [f"{path}: committed, but this run did not write it"]
    now = current.read_bytes()
    if now == committed:
        return []
    problems: list[str] = []
    if path.endswith(".json"):
        _compare_values(path, "", json.loads(committed), json.loads(now), problems)
    elif path.endswith((".csv", ".tsv")):
        old, new = _read_table(committed, path), _read_table(now, path)
        if list(old.columns) != list(new.columns) or len(old) != len(new):
            return [f"{path}: columns or rows differ ({list(new.columns)}, {len(new)} rows now)"]
        for column in old.columns:
            for row, (a, b) in enumerate(zip(old[column].tolist(), new[column].tolist()), start=1):
                found: list[str] = []
                _compare_values(path, str(column), a, b, found)
                problems += [f"{problem} (row {row})" for problem in found]
    else:
        problems.append(f"{path}: differs from the committed file")
    return problems


def _stage_family(name: str) -> str:
    return name.partition("@")[0]


def compare_lock(root: Path, revision: str) -> list[str]:
    committed_text = _committed(root, revision, "dvc.lock")
    if committed_text is None:
        return ["dvc.lock: not committed at this revision"]
    if not (root / "dvc.lock").is_file():
        return ["dvc.lock: missing; run the pipeline first"]
    old = (yaml.safe_load(committed_text) or {}).get("stages", {})
    new = (yaml.safe_load((root / "dvc.lock").read_text()) or {}).get("stages", {})
    problems = [f"dvc.lock: stage {s} committed but not run" for s in sorted(set(old) - set(new))]
    problems += [f"dvc.lock: stage {s} ran but is not committed" for s in sorted(set(new) - set(old))]
    float_outs = {
        out["path"]
        for name, stage in old.items()
        if _stage_family(name) in FLOAT_STAGES
        for out in stage.get("outs", [])
    }
    for name in sorted(set(old) & set(new)):
        a, b = old[name], new[name]
        for field in ("cmd", "params"):
            if a.get(field) != b.get(field):
                problems.append(f"dvc.lock: {name}: {field} differs")
        floating = _stage_family(name) in FLOAT_STAGES
        for field in ("deps", "outs"):
            hashes_a = {e["path"]: e.get("md5") for e in a.get(field, [])}
            hashes_b = {e["path"]: e.get("md5") for e in b.get(field, [])}
            if set(hashes_a) != set(hashes_b):
                problems.append(f"dvc.lock: {name}: {field} are not the same paths")
                continue
            for path, md5 in hashes_a.items():
                # an output of a training stage may differ; so may a dependency that is one
                may_differ = floating if field == "outs" else path in float_outs
                if hashes_b[path] != md5 and not may_differ:
                    problems.append(f"dvc.lock: {name}: {field[:-1]} {path} has another hash")
    return problems


def verify(root: Path, revision: str = "HEAD") -> list[str]:
    """Every difference from ``revision``'s committed results beyond the tolerances; [] when reproduced."""
    problems = compare_lock(root, revision)
    for path in tracked_results(root, revision):
        problems += compare_file(root, revision, path)
    return problems
