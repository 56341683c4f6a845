"""The whole pipeline (download → shots → motion → consensus → evaluate) on the
DAVIS-2016 dev sequences of ../shared, as a user would run it: a manifest of
frame folders and `evaluate.davis_annotations` in params.yaml.

Runs in a temporary copy of the project (the checkout's data/ is untouched) and
writes benchmarks/results/pipeline_davis.json.

    .venv/bin/python benchmarks/pipeline_davis.py
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
DAVIS = ROOT.parent / "shared" / "data" / "davis2016-dev"
SEQUENCES = ["blackswan", "bmx-trees", "car-shadow", "dog", "parkour"]


def main() -> None:
    if not DAVIS.is_dir():
        sys.exit(f"{DAVIS} is not here: this benchmark needs ../shared")
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        for name in ("dvc.yaml", "params.yaml"):
            shutil.copy(ROOT / name, project / name)
        for name in ("flows", "tasks", "motionmasks", "models"):
            shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        pd.DataFrame({"id": SEQUENCES, "url": [str(DAVIS / "JPEGImages/480p" / s) for s in SEQUENCES]}).to_csv(
            project / "davis.csv", index=False
        )
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["download"]["manifest"] = "davis.csv"
        params["evaluate"]["davis_annotations"] = str(DAVIS / "Annotations/480p")
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        for command in (  # a clone has commits: dvclive (the train stage) names runs after the revision
            ["git", "init", "-q"],
            [sys.executable, "-m", "dvc", "init", "-q"],
            ["git", "add", "-A"],
            ["git", "-c", "user.name=benchmark", "-c", "user.email=benchmark@example.invalid", "commit", "-qm", "copy"],
        ):
            subprocess.run(command, cwd=project, check=True, env=env)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "motionmasks.cli", "run"], cwd=project, check=True, env=env)
        seconds = time.perf_counter() - start
        results = {
            "command": "python benchmarks/pipeline_davis.py",
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg()},
            "input": "DAVIS-2016 dev, 5 sequences, 330 frames at 854x480, as frame folders in a manifest",
            "run_seconds_including_corpus_and_prefect_start": round(seconds, 1),
            "stage_metrics": {
                s: json.loads((project / "metrics" / f"{s}.json").read_text())
                for s in ("download", "shots", "motion", "consensus", "evaluate")
            },
            "per_sequence": pd.read_csv(project / "plots/evaluate_per_video.csv").round(4).to_dict("records"),
        }
    out = ROOT / "benchmarks" / "results" / "pipeline_davis.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    evaluate = results["stage_metrics"]["evaluate"]
    print(f"mean J@0.4/0.5/0.7: {evaluate['mean_J@0.4']} / {evaluate['mean_J@0.5']} / {evaluate['mean_J@0.7']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
