"""Speed and quality of flow + motion saliency on the DAVIS-2016 dev sequences.

For each configuration: ms per frame of the flow alone and of the whole
``motion_saliency`` call on 854x480 input, and the saliency's own quality
against the ground truth: J (mean over frames of IoU, IoU = 1 when both are
empty) of ``saliency > t`` for a few thresholds t, per sequence and on average,
plus J at each sequence's best threshold (a normalisation-free view of the
map). The first configuration is the module's defaults.

Run: ``.venv/bin/python benchmarks/motion.py`` (``--threads 2`` to let OpenCV
use both cores; by default one core, the cost per worker process).
Writes benchmarks/results/motion.json and prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from motionmasks.formats import write_json  # noqa: E402
from motionmasks.motion import _shrink, motion_saliency, optical_flow  # noqa: E402
from motionmasks.video import (
    fit_max_side,  # noqa: E402
    read_frames,  # noqa: E402
)

DAVIS = ROOT.parent / "shared" / "data" / "davis2016-dev"
SEQUENCES = ("blackswan", "bmx-trees", "car-shadow", "dog", "parkour")
THRESHOLDS = (0.3, 0.5, 0.7)
SWEEP = np.round(np.arange(0.05, 0.96, 0.05), 2)

CONFIGS = {
    "default": {},
    # The reference's settings with this module's residual: k = 3, frames at
    # 100 px (the reference used 100x100), mean of pairs, max-normalised.
    "ref-like": {"neighbours": 3, "preset": "medium", "flow_max_side": 100, "combine": "mean", "percentile": 100.0},
    "k3-mean": {"neighbours": 3, "combine": "mean"},
    "medium": {"preset": "medium"},
    "side-160": {"flow_max_side": 160},
    "translation": {"model": "translation"},
}


def load(sequence: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Frames (T, 480, 854, 3) uint8, masks (T, 480, 854) bool, decode ms per frame."""
    start = time.perf_counter()
    frames = np.stack([frame for _, frame in read_frames(DAVIS / "JPEGImages" / "480p" / sequence)])
    decode_ms = (time.perf_counter() - start) * 1e3 / len(frames)
    masks = np.stack([frame[..., 0] > 127 for _, frame in read_frames(DAVIS / "Annotations" / "480p" / sequence)])
    return frames, masks, decode_ms


def jaccard(saliency: np.ndarray, masks: np.ndarray, threshold: float) -> float:
    predicted = saliency > threshold
    inter = (predicted & masks).sum(axis=(1, 2))
    union = (predicted | masks).sum(axis=(1, 2))
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())


def flow_ms_per_frame(
    frames: np.ndarray, *, neighbours=1, method="dis", preset="ultrafast", flow_max_side=224, **_
) -> float:
    """The flow's share: shrink + grayscale + every pair ``motion_saliency`` computes."""
    start = time.perf_counter()
    t, h, w = frames.shape[:3]
    size = fit_max_side(w, h, flow_max_side)
    small = [_shrink(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), size) for f in frames]
    for i in range(t):
        for j in (j for d in range(1, neighbours + 1) for j in (i - d, i + d) if 0 <= j < t):
            optical_flow(small[i], small[j], method=method, preset=preset)
    return (time.perf_counter() - start) * 1e3 / t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1: one worker's cost)")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "motion.json")
    args = parser.parse_args()
    if not DAVIS.is_dir():
        sys.exit(f"{DAVIS} is not here: this benchmark needs ../shared beside the checkout")
    cv2.setNumThreads(args.threads)
    load_before = os.getloadavg()

    data = {name: load(name) for name in SEQUENCES}
    results = {}
    for config in args.configs:
        options = CONFIGS[config]
        per_sequence = {}
        for name, (frames, masks, _) in data.items():
            flow_ms = flow_ms_per_frame(frames, **options)
            start = time.perf_counter()
            saliency, diagnostics = motion_saliency(frames, **options)
            total_ms = (time.perf_counter() - start) * 1e3 / len(frames)
            assert np.isfinite(saliency).all() and 0 <= saliency.min() and saliency.max() <= 1
            sweep = {float(t): jaccard(saliency, masks, t) for t in SWEEP}
            best = max(sweep, key=sweep.get)
            per_sequence[name] = {
                "frames": len(frames),
                "flow_ms_per_frame": round(flow_ms, 2),
                "saliency_ms_per_frame": round(total_ms, 2),
                **{f"J@{t}": round(jaccard(saliency, masks, t), 4) for t in THRESHOLDS},
                "J@best": round(sweep[best], 4),
                "best_threshold": best,
                "reliable_fraction": float(diagnostics["reliable"].mean()),
                "mean_inliers": round(float(diagnostics["inliers"].mean()), 4),
                "scale_px": round(float(diagnostics["scale_px"].iloc[0]), 3),
            }
        frames_total = sum(r["frames"] for r in per_sequence.values())
        weighted = lambda key: sum(r[key] * r["frames"] for r in per_sequence.values()) / frames_total  # noqa: E731, B023
        summary = {
            "flow_ms_per_frame": round(weighted("flow_ms_per_frame"), 2),
            "saliency_ms_per_frame": round(weighted("saliency_ms_per_frame"), 2),
            **{
                key: round(float(np.mean([r[key] for r in per_sequence.values()])), 4)
                for key in [f"J@{t}" for t in THRESHOLDS] + ["J@best"]
            },
        }
        results[config] = {"options": options, "mean": summary, "sequences": per_sequence}

    # The first configuration again with OpenCV on both cores (no other change).
    cv2.setNumThreads(2)
    start = time.perf_counter()
    for frames, _, _ in data.values():
        motion_saliency(frames, **CONFIGS[args.configs[0]])
    both_cores_ms = (time.perf_counter() - start) * 1e3 / sum(len(d[0]) for d in data.values())
    results[args.configs[0]]["mean"]["saliency_ms_per_frame_opencv_2_threads"] = round(both_cores_ms, 2)
    cv2.setNumThreads(args.threads)

    report = {
        "benchmark": "motion",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "input": "DAVIS-2016 dev (5 sequences), 854x480 JPEG decoded to RGB uint8; timings exclude decoding",
        "decode_ms_per_frame": round(float(np.mean([d[2] for d in data.values()])), 2),
        "opencv_threads": args.threads,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "note": "2-core machine; see the load averages for what else ran",
            "versions": {pkg: version(pkg) for pkg in ("numpy", "opencv-contrib-python-headless", "pandas")},
        },
        "configs": results,
    }
    write_json(report, args.out)

    print(
        f"{'config':12s} {'flow ms/f':>9s} {'total ms/f':>10s} "
        + " ".join(f"{'J@' + str(t):>6s}" for t in THRESHOLDS)
        + f" {'J@best':>6s}"
    )
    for config, result in results.items():
        m = result["mean"]
        print(
            f"{config:12s} {m['flow_ms_per_frame']:9.2f} {m['saliency_ms_per_frame']:10.2f} "
            + " ".join(f"{m[f'J@{t}']:6.3f}" for t in THRESHOLDS)
            + f" {m['J@best']:6.3f}"
        )
    default = results[args.configs[0]]["sequences"]
    print(f"\n{args.configs[0]} per sequence: " + ", ".join(f"{n} J@0.5={r['J@0.5']:.3f}" for n, r in default.items()))
    print(f"{args.configs[0]} with OpenCV on 2 threads: {both_cores_ms:.2f} ms/frame")
    print(
        f"decode {report['decode_ms_per_frame']} ms/frame; load {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
