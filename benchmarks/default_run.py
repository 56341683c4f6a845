"""`motionmasks run` on the embedded default corpus, as a new user gets it:
a clean clone of this repository's HEAD, run twice (the second run must re-run
nothing), then each output's DVC hash compared with the committed dvc.lock
(outputs that differ are not reproduced bit for bit); then DVC's own commands
as a team uses them (`dvc repro` with nothing changed, after a parameter change,
back to the value already run, and one stage forced twice in a row).

The clone reuses this checkout's .venv, so installation time is not counted.
Writes benchmarks/results/default_run.json.

    .venv/bin/python benchmarks/default_run.py
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(
    r"^([\w@-]+)\s+(ran|restored \(run cache\)|skipped \(up to date\)|failed|not run.*?)\s+([\d.]+)(?:  .*)?$", re.M
)


def run_pipeline(project: Path, env: dict) -> dict:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "motionmasks.cli", "run"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    stages = {
        name: {"outcome": outcome, "seconds": float(seconds)} for name, outcome, seconds in SUMMARY.findall(done.stdout)
    }
    return {"seconds": round(time.perf_counter() - start, 1), "stages": stages}


def timed_dvc(project: Path, env: dict, *args: str) -> dict:
    """A bare DVC command as a team runs it (no motionmasks wrapper): seconds and what DVC said."""
    log = project / ".prefect" / "run-server.log"
    started_before = log.read_text().count(" serves http") if log.is_file() else 0
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project, env=env, capture_output=True, text=True, check=True
    )
    said = done.stdout + done.stderr
    return {
        "command": "dvc " + " ".join(args),
        "seconds": round(time.perf_counter() - start, 1),
        "stages_run": re.findall(r"Running stage '([^']+)'", said),
        "stages_restored_from_run_cache": re.findall(r"Stage '([^']+)' is cached - skipping run", said),
        # the project's run server (flows.prefect_api) says so in its log each time one starts
        "prefect_run_servers_started": (log.read_text().count(" serves http") if log.is_file() else 0) - started_before,
        "temporary_prefect_servers_started": said.count("Starting temporary server"),
    }


def team_operations(project: Path, env: dict) -> dict:
    """DVC's own commands on the finished project: nothing to do, a parameter change, going
    back to the value already run (DVC's run cache), and two forced runs of one stage in a row
    (the first after the project's Prefect run server stopped, so it starts one; the second
    reuses it). The commands before run within 30 s of `motionmasks run`, so they reuse its server."""
    params_file = project / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["evaluate"]["threshold"] = 0.4
    nothing = timed_dvc(project, env, "repro")
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    changed = timed_dvc(project, env, "repro")
    params_file.write_text(original)
    back = timed_dvc(project, env, "repro")
    time.sleep(40)  # the run server stops 30 s after its last user: the first forced run starts one
    forced = [timed_dvc(project, env, "repro", "--single-item", "--force", "detection") for _ in range(2)]
    return {
        "nothing_changed": nothing,
        "evaluate.threshold 0.5 -> 0.4": changed,
        "evaluate.threshold back to 0.5": back,
        "forced detection, twice in a row": forced,
    }


def out_hashes(lock: Path) -> dict[str, str]:
    stages = yaml.safe_load(lock.read_text())["stages"]
    return {out["path"]: out["md5"] for stage in stages.values() for out in stage.get("outs", [])}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(project)], check=True)
        (project / ".venv").symlink_to(ROOT / ".venv")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        env.pop("PREFECT_API_URL", None)
        env["PREFECT_HOME"] = str(project / ".prefect")
        first, second = run_pipeline(project, env), run_pipeline(project, env)
        committed, produced = out_hashes(ROOT / "dvc.lock"), out_hashes(project / "dvc.lock")
        differing = sorted(path for path in produced if committed.get(path) != produced[path])
        evaluate = json.loads((project / "metrics/evaluate.json").read_text())
        operations = team_operations(project, env)
    results = {
        "command": "python benchmarks/default_run.py",
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg()},
        "first_run": first,
        "second_run": second,
        "second_run_reran": [s for s, r in second["stages"].items() if r["outcome"] != "skipped (up to date)"],
        "outputs_differing_from_committed_dvc_lock": differing,
        "evaluate": evaluate,
        "dvc_commands_after": operations,
    }
    out = ROOT / "benchmarks" / "results" / "default_run.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: results[k]
                for k in (
                    "first_run",
                    "second_run_reran",
                    "outputs_differing_from_committed_dvc_lock",
                    "dvc_commands_after",
                )
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
