"""The paper's robustness experiment (§4): how much does the ConvNet suffer when
the masks it learns from are wrong in a systematic way?

The ConvNet is trained from the davis2016-train true masks instead of motion
masks, degraded by ``motionmasks.prune.degrade_mask``: eroded or dilated with
a square kernel, or truncated by zeroing a strip covering a share of the
object's box from one side. Each setting trains the same network with the
same solver on the same videos; its J is measured on the held-out split of
those 30 sequences (whole sequences, chosen by ``train.val_fraction`` and
``train.seed``) against their *true* masks, on the whole frame.

    .venv/bin/python benchmarks/robustness.py [--epochs 3] [--every 2] [--setting erode:9 ...]

Settings are KIND:AMOUNT (``none:0``, ``erode:9``, ``dilate:9``,
``truncate:0.25``, ...), or ``teacher:DIR`` to train from the masks
``motionmasks segment`` wrote for these frames into DIR (pseudo-masks against
true masks on the same frames and the same judge). Solver settings are the
project's params.yaml train group; ``--epochs`` overrides its budget,
``--set train.KEY=VALUE`` changes one. Writes benchmarks/results/robustness.json
(``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.checkpoint import load_masknet  # noqa: E402
from motionmasks.convnet import centred_prior  # noqa: E402
from motionmasks.evaluate import iou, read_truth_mask  # noqa: E402
from motionmasks.formats import TrainingShard, write_json, write_training_shard  # noqa: E402
from motionmasks.params import ParamsError, load_params, parse_params  # noqa: E402
from motionmasks.prune import degrade_mask  # noqa: E402
from motionmasks.train import Frames, held_out_iou, held_out_videos, train  # noqa: E402
from motionmasks.video import fit_max_side, frame_files  # noqa: E402

DAVIS = ROOT.parent / "shared" / "data" / "davis2016-train"
DEFAULT_SETTINGS = ["none:0", "erode:9", "dilate:9", "truncate:0.25", "truncate:0.5"]


def load_sequences(every: int, max_side: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every ``every``-th frame of each sequence and its true mask (0/255), at the pipeline's working size."""
    sequences = {}
    for folder in sorted(p for p in (DAVIS / "JPEGImages" / "240p").iterdir() if p.is_dir()):
        images, masks = [], []
        for path in frame_files(folder)[::every]:
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            size = fit_max_side(image.shape[1], image.shape[0], max_side)
            truth = read_truth_mask(DAVIS / "Annotations" / "240p" / folder.name / f"{path.stem}.png")
            images.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
            masks.append(cv2.resize(truth.astype(np.uint8) * 255, size, interpolation=cv2.INTER_NEAREST))
        sequences[folder.name] = (np.stack(images), np.stack(masks))
    return sequences


def teacher_masks(folder: Path, sequence: str, every: int, size: tuple[int, int]) -> np.ndarray:
    """The soft masks ``motionmasks segment`` wrote for a sequence's frames, at the working size (8-bit)."""
    paths = frame_files(DAVIS / "JPEGImages" / "240p" / sequence)[::every]
    masks = []
    for path in paths:
        mask = cv2.imread(str(folder / sequence / f"{path.stem}.png"), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            sys.exit(f"{folder / sequence / path.stem}.png: no teacher mask (run motionmasks segment first)")
        masks.append(cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_AREA))
    return np.stack(masks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--every", type=int, default=2, help="use every N-th frame of each sequence")
    parser.add_argument("--setting", action="append", default=None, metavar="KIND:AMOUNT")
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="train.KEY=VALUE",
        help="a train setting over params.yaml (e.g. train.head=conv), to measure a lever on the same data",
    )
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "robustness")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "robustness.json")
    args = parser.parse_args()
    if not DAVIS.is_dir():
        sys.exit(f"{DAVIS} is not here: this benchmark needs ../shared")
    raw = load_params(ROOT / "params.yaml").model_dump(mode="json")
    raw["train"]["epochs"] = args.epochs
    raw["train"]["width"] = 1.0  # the paper's full-width AlexNet, whatever params.yaml gives the embedded default
    for assignment in args.assignments:
        key, _, value = assignment.partition("=")
        if not key.startswith("train.") or not _:
            sys.exit(f"--set {assignment}: expected train.KEY=VALUE")
        raw["train"][key.removeprefix("train.")] = yaml.safe_load(value)
    try:  # validated like params.yaml itself, so a wrong key or value says what to fix
        params = parse_params(raw, "params.yaml with --epochs/--set")
    except ParamsError as exc:
        sys.exit(str(exc))
    solver = params.train
    sequences = load_sequences(args.every, params.shots.working_max_side)
    held_out = held_out_videos(list(sequences), solver.val_fraction, solver.seed)
    truth = Frames(
        np.concatenate([sequences[s][0] for s in sorted(held_out)]),
        np.concatenate([sequences[s][1] for s in sorted(held_out)]),
        np.array([s for s in sorted(held_out) for _ in range(len(sequences[s][0]))]),
    )
    rows = []
    for setting in args.setting or DEFAULT_SETTINGS:
        kind, _, amount = setting.partition(":")
        name = kind if kind == "teacher" else setting.replace(":", "-")
        folder = args.work / "-".join([name, *sorted(args.assignments)])
        shards = []
        for seq, (images, masks) in sequences.items():
            if kind == "teacher":  # the motion segmenter's masks of these frames (`motionmasks segment` PNGs)
                degraded = teacher_masks(Path(amount), seq, args.every, masks.shape[1:])
            else:
                degraded = np.stack([degrade_mask(m, kind, float(amount or 0)) for m in masks])
            path = folder / "shards" / f"{seq}.npz"
            n = len(images)
            write_training_shard(path, TrainingShard(seq, images, degraded, np.arange(n), np.zeros(n)))
            shards.append(path)
        start = time.perf_counter()
        torch.manual_seed(0)
        summary = train(
            shards, folder / "model.pt", folder / "state", solver, log=lambda m, s=setting: print(f"[{s}] {m}")
        )
        model, info = load_masknet(folder / "model.pt")
        # judged at the threshold it calibrated on its own (degraded) held-out masks, as the student is
        threshold = float(info.get("threshold", 0.5))
        rows.append(
            {
                "setting": setting,
                "held_out_J_vs_true_masks": round(held_out_iou(model, truth, torch.device("cpu"), threshold), 4),
                "threshold": threshold,
                "held_out_iou_vs_its_own_masks": round(summary["held_out_iou"], 4),
                "best_epoch": summary["best_epoch"],
                "train_seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(rows[-1])
    prior = centred_prior(truth.masks.shape[2], truth.masks.shape[1]) >= 128
    prior_j = np.mean([iou(prior, m >= 128) for m in truth.masks])
    rows.append({"setting": "centred prior (no training)", "held_out_J_vs_true_masks": round(float(prior_j), 4)})
    results = {
        "command": "python benchmarks/robustness.py "
        + " ".join(
            [f"--epochs {args.epochs}", f"--every {args.every}"]
            + [f"--setting {s}" for s in args.setting or []]
            + [f"--set {a}" for a in args.assignments]
        ),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "data": f"davis2016-train true masks, one frame in {args.every}, at the working size; "
        f"held out: {sorted(held_out)} ({len(truth.images)} frames)",
        "solver": solver.model_dump(mode="json"),
        "table": rows,
    }
    out = args.out
    write_json(results, out)  # atomic: a killed run leaves the last results whole
    for row in rows:
        print(f"{row['setting']:16} J {row['held_out_J_vs_true_masks']:.3f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
