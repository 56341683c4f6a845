"""`motionmasks run` on the embedded default corpus, as a new user gets it:
a clean clone of this repository's HEAD, run twice (the second run must re-run
nothing), then each output's DVC hash compared with the committed dvc.lock
(outputs that differ are not reproduced bit for bit).

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
SUMMARY = re.compile(r"^([\w@-]+)\s+(ran|skipped \(up to date\)|failed|not run.*?)\s+([\d.]+)(?:  .*)?$", re.M)


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
    results = {
        "command": "python benchmarks/default_run.py",
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg()},
        "first_run": first,
        "second_run": second,
        "second_run_reran": [s for s, r in second["stages"].items() if r["outcome"] != "skipped (up to date)"],
        "outputs_differing_from_committed_dvc_lock": differing,
        "evaluate": evaluate,
    }
    out = ROOT / "benchmarks" / "results" / "default_run.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        json.dumps(
            {k: results[k] for k in ("first_run", "second_run_reran", "outputs_differing_from_committed_dvc_lock")},
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
