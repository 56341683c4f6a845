"""The transfer table on real images (paper §6, Figure 8): mAP per trunk x depth x training-set size.

    .venv/bin/python benchmarks/transfer_fruits.py \
        --trunk motion=benchmarks/work/student_teacher/project/data/train/model.pt \
        [--depths all,c1,c2,c3,c4,c5] [--sizes all,60] [--set iterations=400 ...] [--holdout 80]

Each setting fine-tunes a Fast R-CNN with ``motionmasks.transfer.run_transfer``
(what the transfer stage and ``motionmasks transfer`` run) on
``../shared/data/fruits-voc`` train (240 images) and scores VOC AP@0.5 on its
test set (60). A random trunk is always one line; ``--trunk NAME=CKPT`` adds
others. The solver is params.yaml's ``transfer.solver``; ``--set KEY=VALUE``
changes one key (validated like params.yaml). ``--holdout N`` scores on N
images held out of the training set instead of the test set: the tuning
split, for choosing solver settings without looking at the test set.

Selective-search proposals are computed once per image (both cores) and
cached under ``--work``. Results go to ``--out`` (default
benchmarks/results/transfer_fruits.json) after every setting, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.checkpoint import read_checkpoint  # noqa: E402
from motionmasks.detection import DetectionImage, load_dataset, subset  # noqa: E402
from motionmasks.formats import read_json, read_proposal_shard, write_json, write_proposal_shard  # noqa: E402
from motionmasks.params import ParamsError, parse_params  # noqa: E402
from motionmasks.proposals import propose_all  # noqa: E402
from motionmasks.transfer import RANDOM, TransferSettings, run_transfer  # noqa: E402

FRUITS = ROOT.parent / "shared" / "data" / "fruits-voc"


def proposals_for(images: list[DetectionImage], settings: dict, cache: Path, workers: int) -> tuple[dict, float]:
    """{image id: boxes}, computed once (cached in ``cache``); and seconds spent computing."""
    if cache.exists():
        stored = read_proposal_shard(cache)
        if set(stored) >= {i.image for i in images}:
            return stored, 0.0
    started = time.perf_counter()
    result, failed = propose_all(images, settings, workers)
    if failed:
        sys.exit(f"proposals failed: {failed}")
    seconds = time.perf_counter() - started
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_proposal_shard(cache, result)
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, default=FRUITS / "train_zip" / "train")
    parser.add_argument("--test", type=Path, default=FRUITS / "test_zip" / "test")
    parser.add_argument("--trunk", action="append", default=[], metavar="NAME=CKPT")
    parser.add_argument("--depths", default="all,c1,c2,c3,c4,c5")
    parser.add_argument("--sizes", default="all,60", help="training-set sizes ('all' or a number), comma-separated")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--holdout", type=int, default=0, help="score on N training images held out (tuning split)")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "transfer_fruits")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "transfer_fruits.json")
    args = parser.parse_args()
    if not args.train.is_dir():
        sys.exit(f"{args.train}: not found (this benchmark needs ../shared/data/fruits-voc)")

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for assignment in args.assignments:
        key, sep, value = assignment.partition("=")
        if not sep:
            sys.exit(f"--set {assignment}: expected KEY=VALUE (a key of transfer.solver)")
        raw["transfer"]["solver"][key.removeprefix("transfer.solver.")] = yaml.safe_load(value)
    try:
        params = parse_params(raw, "params.yaml with --set")
    except ParamsError as exc:
        sys.exit(str(exc))
    solver = params.transfer.solver
    settings = TransferSettings(**solver.model_dump())
    proposal_settings = params.proposals.model_dump(exclude={"max_failure_fraction"})
    trunks = {RANDOM: RANDOM}
    for spec in args.trunk:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            sys.exit(f"--trunk {spec}: expected NAME=CHECKPOINT of an existing file")
        trunks[name] = path
    # The random line is built like the first checkpoint (same widths, same batch
    # norm), so the lines differ only in their initialisation; without one, like params.yaml.
    random_like = {"batch_norm": params.train.batch_norm, "width": params.train.width}
    if len(trunks) > 1:
        config = read_checkpoint(next(p for n, p in trunks.items() if n != RANDOM))["config"]
        random_like = {"batch_norm": config["batch_norm"], "width": config["width"]}
    depths = args.depths.split(",")
    sizes = [None if s == "all" else int(s) for s in args.sizes.split(",")]

    train, train_report = load_dataset(args.train)
    if args.holdout:
        held = {i.image for i in subset(train, args.holdout, seed=1)}
        test, test_report = [i for i in train if i.image in held], train_report
        train = [i for i in train if i.image not in held]
    else:
        test, test_report = load_dataset(args.test)
    workers = os.cpu_count() or 1
    tag = "-".join(f"{k}{v}" for k, v in sorted(proposal_settings.items()))
    train_props, train_seconds = proposals_for(train, proposal_settings, args.work / f"train-{tag}.npz", workers)
    test_props, test_seconds = proposals_for(test, proposal_settings, args.work / f"test-{tag}.npz", workers)
    computed = (len(train) if train_seconds else 0) + (len(test) if test_seconds else 0)

    done = read_json(args.out) if args.out.exists() else {}
    same = done.get("solver") == solver.model_dump(mode="json") and done.get("holdout") == args.holdout
    rows = done.get("table", []) if same else []
    result = {
        "command": " ".join(["benchmarks/transfer_fruits.py", *sys.argv[1:]]),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        },
        "data": {
            "train": str(args.train),
            "test": "held out of train" if args.holdout else str(args.test),
            "train_images": len(train),
            "test_images": len(test),
            "train_report": train_report.as_metrics(),
            "test_report": test_report.as_metrics(),
        },
        "holdout": args.holdout,
        "solver": solver.model_dump(mode="json"),
        "proposals": {
            **proposal_settings,
            "per_image_mean": float(np.mean([len(v) for v in train_props.values()])),
            **(
                {"images_per_s": computed / (train_seconds + test_seconds), "workers": workers}
                if computed
                else done.get("proposals", {})
                and {k: done["proposals"][k] for k in ("images_per_s", "workers") if k in done["proposals"]}
            ),
        },
        "trunks": {name: str(path) for name, path in trunks.items()},
        "random_trunk_built_like": random_like,
        "table": rows,
    }
    for size in sizes:
        for name, trunk in trunks.items():
            for depth in depths:
                key = {"trunk": name, "depth": depth, "train_size": size or "all"}
                if any(all(r.get(k) == v for k, v in key.items()) for r in rows):
                    continue
                print(f"== {key}", flush=True)
                metrics, timing = run_transfer(
                    train,
                    train_props,
                    test,
                    test_props,
                    trunk=trunk,
                    depth=depth,
                    train_size=size,
                    settings=settings,
                    random_like=random_like,
                    log=lambda line: print("  " + line, flush=True),
                )
                rows.append(
                    {
                        **key,
                        "mAP": metrics["mAP"],
                        "mAP_11point": metrics["mAP_11point"],
                        "AP": metrics["AP"],
                        "train_images": metrics["train_images"],
                        **{k: round(v, 3) for k, v in timing.items()},
                    }
                )
                result["peak_rss_mb"] = max(
                    done.get("peak_rss_mb", 0), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                )
                write_json(result, args.out)
                print(f"   mAP {metrics['mAP']:.3f} (11-point {metrics['mAP_11point']:.3f})", flush=True)


if __name__ == "__main__":
    main()
