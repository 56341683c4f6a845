"""Training throughput of the mask ConvNet (images/s), and whether the data
loader is the bottleneck: the loader alone, a training step alone (one batch
already in memory, repeated), and the two together as the train stage runs
them. On a CUDA GPU the same runs use it (bfloat16 autocast, as the stage).

Frames are synthetic (random pixels, a box as the mask) at the pipeline's
working size (256 x 144), so the benchmark needs nothing but this checkout.

    .venv/bin/python benchmarks/train_throughput.py [--batches 8] [--width 1.0]

Writes benchmarks/results/train_throughput.json (the card's name in it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.masknet import MaskNet  # noqa: E402
from motionmasks.params import TrainParams  # noqa: E402
from motionmasks.train import Frames, MaskCrops, masked_logistic_loss  # noqa: E402


def synthetic_frames(count: int, seed: int = 0) -> Frames:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 144, 256, 3), dtype=np.uint8)
    masks = np.zeros((count, 144, 256), np.uint8)
    for i in range(count):
        y, x = rng.integers(10, 80), rng.integers(10, 160)
        masks[i, y : y + 50, x : x + 80] = 255
    return Frames(images, masks, np.array([f"v{i % 8}" for i in range(count)]))


def loader_rate(dataset: MaskCrops, batch: int, workers: int, batches: int) -> float:
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - start)


def step_rate(model: torch.nn.Module, sample: tuple, device: torch.device, batches: int) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    images, target, weight = (t.to(device) for t in sample)

    def step() -> None:
        with autocast:
            logits = model(images)
        loss = masked_logistic_loss(logits, target, weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batches * len(images) / (time.perf_counter() - start)


def together_rate(model, dataset, batch, workers, device, batches) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        images, target, weight = (t.to(device) for t in next(iterator))
        with autocast:
            logits = model(images)
        loss = masked_logistic_loss(logits, target, weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batches * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_throughput.json")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    params = TrainParams(width=args.width, batch_size=args.batch_size)
    dataset = MaskCrops(synthetic_frames(args.batch_size * (args.batches + 2)), params)
    model = MaskNet(width=args.width, batch_norm=True).to(device).train()
    sample = next(iter(DataLoader(dataset, batch_size=args.batch_size)))
    cores = os.cpu_count() or 1
    loader = {f"{w} worker(s)": round(loader_rate(dataset, args.batch_size, w, args.batches), 1) for w in (0, 1, 2)}
    step = round(step_rate(model, sample, device, args.batches), 1)
    workers = 2 if device.type == "cpu" else min(8, cores)
    together = round(together_rate(model, dataset, args.batch_size, workers, device, args.batches), 1)
    results = {
        "command": f"python benchmarks/train_throughput.py --batches {args.batches} --width {args.width}",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": cores,
            "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
            "torch": torch.__version__,
        },
        "network": f"AlexNet (width {args.width}) + batch norm + fc 56x56 head, input 227, batch {args.batch_size}",
        "images_per_second": {
            "loader_alone": loader,
            "training_step_alone": step,
            f"loader_and_step_together ({workers} loader workers)": together,
        },
        "loader_is_bottleneck": max(loader.values()) < step,
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["images_per_second"], indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
