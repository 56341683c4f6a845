"""Per-item throughput of the per-video stages with 1 and 2 local workers (docs/cluster.md).

A clean clone of this repository's HEAD runs the pipeline up to ``prune`` on the
embedded default corpus, then re-runs the per-video stages (``--force``) with
``runtime.workers`` 1 and then 2. Each stage's wall time (process start
included) comes from ``motionmasks run``'s summary; its frames from its
metrics. Writes benchmarks/results/cluster_throughput.json.

    .venv/bin/python benchmarks/cluster_throughput.py
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["shots", "motion", "consensus", "prune"]
ROW = re.compile(r"^([\w@-]+)\s+(ran|skipped \(up to date\))\s+([\d.]+)", re.M)


def run(project: Path, env: dict, *args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "motionmasks.cli", "run", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return {name: float(seconds) for name, outcome, seconds in ROW.findall(done.stdout) if outcome == "ran"}


def frames_of(project: Path, stage: str) -> int:
    metrics = json.loads((project / "metrics" / f"{stage}.json").read_text())
    return int(metrics.get("frames", metrics.get("frames_in", 0)))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(project)], check=True)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        env.pop("PREFECT_API_URL", None)
        env["PREFECT_HOME"] = str(project / ".prefect")
        run(project, env, "prune")
        table = []
        for workers in (1, 2):
            params = yaml.safe_load((project / "params.yaml").read_text())
            params["runtime"]["workers"] = workers
            (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            seconds = run(project, env, *STAGES, "--force")
            for stage in STAGES:
                frames = frames_of(project, stage)
                table.append(
                    {
                        "stage": stage,
                        "workers": workers,
                        "frames": frames,
                        "seconds": seconds[stage],
                        "frames_per_s": round(frames / seconds[stage], 1),
                    }
                )
                print(table[-1], flush=True)
        download = json.loads((project / "metrics" / "download.json").read_text())
        sizes = {
            name: sum(f.stat().st_size for f in (project / path).rglob("*") if f.is_file())
            for name, path in {
                "download": "data/download/videos",
                "motion": "data/motion/shards",
                "consensus": "data/consensus/shards",
                "prune": "data/prune/shards",
            }.items()
        }
    results = {
        "command": "python benchmarks/cluster_throughput.py",
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg()},
        "corpus": {
            "videos": download["fetched"],
            "frames": download["frames"],
            "note": "the embedded default, 320x240",
        },
        "table": table,
        "bytes_per_frame": {name: round(size / download["frames"]) for name, size in sizes.items()},
    }
    out = ROOT / "benchmarks" / "results" / "cluster_throughput.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
