"""Train another student on a project's pruned frames, without re-running its pipeline.

A comparison of students (another head, learning rate or budget) needs the same
training frames; re-running the pipeline for each costs the whole motion
segmentation again. This reads the project's prune index (as the train stage
does) and trains with the project's ``train`` params, changed by ``--set``:

    .venv/bin/python benchmarks/retrain_student.py --project benchmarks/work/student_teacher/project \\
        --out benchmarks/work/student_fc --set head=fc --set lr=0.01

Writes ``OUT/model.pt`` (the best epoch's model, as the train stage's) and ``OUT/summary.json``
(the train stage's metrics, the settings and the command). A killed run resumes from ``OUT/state``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from motionmasks.formats import read_table, write_json  # noqa: E402
from motionmasks.params import ParamsError, TrainParams  # noqa: E402
from motionmasks.train import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, required=True, help="a project folder whose prune stage ran")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a train param, e.g. head=fc")
    parser.add_argument("--loader-workers", type=int, default=1)
    args = parser.parse_args()

    written_here = args.out / "summary.json"
    if args.out.exists() and any(args.out.iterdir()) and not written_here.exists():
        sys.exit(f"error: {args.out} holds files this script did not write (no summary.json); choose an empty --out")
    if not (args.project / "params.yaml").is_file() or not (args.project / "data/prune/index.parquet").is_file():
        sys.exit(f"error: {args.project}: not a project whose prune stage ran (params.yaml, data/prune/index.parquet)")
    settings = dict(yaml.safe_load((args.project / "params.yaml").read_text())["train"])
    settings = {k: v for k, v in settings.items() if k in TrainParams.model_fields}  # the project's own
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in TrainParams.model_fields:
            sys.exit(f"error: --set {item}: train has no param {key!r}; it has {', '.join(TrainParams.model_fields)}")
        settings[key] = yaml.safe_load(value)
    try:
        params = TrainParams.model_validate(settings)
    except (ParamsError, ValueError) as exc:
        sys.exit(f"error: train params: {exc}")
    index = read_table(args.project / "data/prune/index.parquet")
    shards = [str(args.project / p) for p in index["path"] if p]
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = train(shards, args.out / "model.pt", args.out / "state", params, loader_workers=args.loader_workers)
    write_json(
        {
            "command": "python " + " ".join(sys.argv),
            "project": str(args.project),
            "train_params": params.model_dump(),
            "minutes_this_run": round((time.perf_counter() - start) / 60, 1),
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
            "summary": summary,
        },
        args.out / "summary.json",
    )
    print(summary)


if __name__ == "__main__":
    main()
