"""Speed, memory and quality of the whole label-free segmenter on the DAVIS-2016 dev sequences.

What it measures, on 854x480 input (each sequence is one shot):

- ms per frame of every stage of ``segment_frames`` (decode, flow, saliency
  without the flow, superpixels, descriptors, graph, voting, upsampling) and
  the total frames/s, decode included;
- J (mean over frames of IoU, IoU = 1 when both are empty; mean over
  sequences) at the thresholds 0.4, 0.5 and 0.7, per sequence and on average;
- the choices behind the consensus defaults: superpixel algorithms, exact
  against approximate neighbours, superpixel count, neighbours per frame,
  the guided-filter refinement and the blob post-processing, each as J and
  ms/frame of the consensus stage on the same saliency;
- the descriptor and neighbour-search implementations against the
  reference's way (per-superpixel scikit-image HOG + ``np.histogram``; a
  KD-tree), and OpenCV's HOGDescriptor;
- peak memory of a 110-frame 854x480 shot, in fresh subprocesses:
  ``segment_frames`` on the whole shot in memory, and ``segment_source``
  streaming it from a frame folder.

Run: ``.venv/bin/python benchmarks/segmenter.py`` (``--quick`` skips the
choices and the implementation comparisons). BLAS runs on one thread unless
OPENBLAS_NUM_THREADS says otherwise and OpenCV on ``--threads`` (default 1):
one worker process's cost; the pipeline runs one worker per core.
Writes benchmarks/results/segmenter.json and prints a table.
"""

from __future__ import annotations

import os

# One BLAS thread: on this 2-core machine two threads made the distance
# products 2-3x slower (measured), and the pipeline runs one worker per core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import motionmasks.motion as motion_module  # noqa: E402
from motionmasks import consensus as C  # noqa: E402
from motionmasks.evaluate import score_sequence  # noqa: E402
from motionmasks.formats import write_json  # noqa: E402
from motionmasks.segment import segment_frames  # noqa: E402
from motionmasks.video import read_frames, resize_max_side  # noqa: E402

DAVIS = ROOT.parent / "shared" / "data" / "davis2016-dev"
SEQUENCES = ("blackswan", "bmx-trees", "car-shadow", "dog", "parkour")
THRESHOLDS = (0.4, 0.5, 0.7)
REFERENCE_J07 = {"blackswan": 0.810, "bmx-trees": 0.206, "car-shadow": 0.123, "dog": 0.433, "parkour": 0.005}
STAGES = ("decode", "flow", "saliency", "superpixels", "descriptors", "graph", "voting", "upsample")
SHOT_FRAMES = 110

# Consensus variants compared on the same saliency (changes from the defaults).
CHOICES = {
    "default": {},
    "slic-skimage (ref)": {"method": "slic"},
    "slic-opencv": {"method": "slic-cv"},
    "slico-opencv": {"method": "slico"},
    "approx dims=48": {"dims": 48},
    "approx dims=24": {"dims": 24},
    "n_segments=200": {"n_segments": 200},
    "n_segments=400": {"n_segments": 400},
    "per_frame=2 (ref)": {"per_frame": 2},
    "window=7": {"window": 7},
    "no refine": {"refine_radius": 0},
    "no blob post-processing": {"blob_ratio": 0.0},
    "bandwidth=0.05": {"bandwidth": 0.05},
    "bandwidth=0.2": {"bandwidth": 0.2},
    "working 320 px": {"working_max_side": 320, "n_segments": 450},
    "ref-like (slic, 400 sp, L=2, no refine)": {
        "method": "slic",
        "n_segments": 400,
        "per_frame": 2,
        "refine_radius": 0,
    },
}


def load(sequence: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Frames (T, 480, 854, 3) uint8, masks (T, 480, 854) bool, decode ms per frame."""
    start = time.perf_counter()
    frames = np.stack([frame for _, frame in read_frames(DAVIS / "JPEGImages" / "480p" / sequence)])
    decode_ms = (time.perf_counter() - start) * 1e3 / len(frames)
    masks = np.stack([frame[..., 0] > 127 for _, frame in read_frames(DAVIS / "Annotations" / "480p" / sequence)])
    return frames, masks, decode_ms


def scores(maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    return {f"J@{t}": round(score_sequence(maps, masks, threshold=t)["J"], 4) for t in THRESHOLDS}


def mean_scores(per_sequence: dict[str, dict]) -> dict[str, float]:
    return {f"J@{t}": round(float(np.mean([r[f"J@{t}"] for r in per_sequence.values()])), 4) for t in THRESHOLDS}


class FlowTimer:
    """Times every ``optical_flow`` call that ``motion_saliency`` makes (it looks the name up at call time)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._original = motion_module.optical_flow

    def __enter__(self) -> FlowTimer:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self._original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        motion_module.optical_flow = timed
        return self

    def __exit__(self, *exc) -> None:
        motion_module.optical_flow = self._original


def run_pipeline(data: dict) -> dict:
    """The default segmenter on every sequence: stage timings and J."""
    per_sequence, totals, frames_total = {}, dict.fromkeys(STAGES, 0.0), 0
    for name, (frames, masks, decode_ms) in data.items():
        timings: dict[str, float] = {}
        with FlowTimer() as flow:
            start = time.perf_counter()
            maps = segment_frames(frames, timings=timings)
            elapsed = time.perf_counter() - start
        assert maps.shape == masks.shape and np.isfinite(maps).all()
        t = len(frames)
        stage_s = {
            "decode": decode_ms * t / 1e3,
            "flow": flow.seconds,
            "saliency": timings["saliency"] - flow.seconds,
            **{k: timings[k] for k in ("superpixels", "descriptors", "graph", "voting", "upsample")},
        }
        stage_s["other"] = elapsed - sum(v for k, v in stage_s.items() if k != "decode")  # shrinking, stacking
        for key, value in stage_s.items():
            totals[key] = totals.get(key, 0.0) + value
        frames_total += t
        per_sequence[name] = {
            "frames": t,
            **scores(maps, masks),
            "reference_uNLC_J@0.7": REFERENCE_J07[name],
            "ms_per_frame": {k: round(v * 1e3 / t, 2) for k, v in stage_s.items()},
            "frames_per_s": round(t / sum(stage_s.values()), 1),
        }
    stage_ms = {k: round(v * 1e3 / frames_total, 2) for k, v in totals.items()}
    return {
        "sequences": per_sequence,
        "mean": mean_scores(per_sequence),
        "ms_per_frame": stage_ms,
        "total_ms_per_frame": round(sum(stage_ms.values()), 2),
        "frames_per_s": round(1e3 * frames_total / sum(v * 1e3 for v in totals.values()), 1),
    }


def run_choices(data: dict) -> dict:
    """Consensus variants on the default saliency (computed once per sequence, at the working size)."""
    prepared = {}
    for name, (frames, masks, _) in data.items():
        small = np.stack([resize_max_side(f, 320) for f in frames])  # the largest working size compared
        saliency, _ = motion_module.motion_saliency(small)
        prepared[name] = (small, saliency, masks)
    results = {}
    for label, options in CHOICES.items():
        per_sequence, timings, frames_total = {}, {}, 0
        for name, (small, saliency, masks) in prepared.items():
            maps = C.consensus_voting(small, saliency, timings=timings, **options)
            h, w = masks.shape[1:]
            maps = np.stack([np.clip(cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR), 0, 1) for m in maps])
            per_sequence[name] = scores(maps, masks)
            frames_total += len(small)
        results[label] = {
            "options": options,
            "mean": mean_scores(per_sequence),
            "sequences": per_sequence,
            "ms_per_frame": {k: round(v * 1e3 / frames_total, 2) for k, v in timings.items()},
            "consensus_ms_per_frame": round(sum(timings.values()) * 1e3 / frames_total, 2),
        }
        m = results[label]["mean"]
        print(
            f"  {label:42s} J@0.4/0.5/0.7 {m['J@0.4']:.3f}/{m['J@0.5']:.3f}/{m['J@0.7']:.3f}  "
            f"consensus {results[label]['consensus_ms_per_frame']:6.2f} ms/frame",
            flush=True,
        )
    return results


def _reference_descriptors(frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The reference's loop: a 15x15 patch per superpixel, skimage HOG and np.histogram per channel."""
    from skimage import color
    from skimage.feature import hog

    h, w = labels.shape
    lab = color.rgb2lab(frame)
    gray = color.rgb2gray(frame)
    out = []
    for s in __import__("scipy.ndimage", fromlist=["find_objects"]).find_objects(labels + 1):
        cy = (s[0].start + s[0].stop - 1) // 2
        cx = (s[1].start + s[1].stop - 1) // 2
        y0, x0 = min(max(cy - 7, 0), h - 15), min(max(cx - 7, 0), w - 15)
        patch = (slice(y0, y0 + 15), slice(x0, x0 + 15))
        feature = [hog(gray[patch], orientations=6, pixels_per_cell=(5, 5), cells_per_block=(3, 3))]
        for c in range(3):
            feature.append(np.histogram(frame[patch][..., c], bins=20, range=(0, 255))[0] / 225)
        for c, span in enumerate([(0, 100), (-128, 127), (-128, 127)]):
            feature.append(np.histogram(lab[patch][..., c], bins=20, range=span)[0] / 225)
        feature.append([cy / h, cx / w])
        out.append(np.concatenate(feature))
    return np.asarray(out, np.float32)


def _opencv_hog(frame: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """OpenCV's HOGDescriptor on the 15x15 patch around each centre (54-d)."""
    hog = cv2.HOGDescriptor((15, 15), (15, 15), (5, 5), (5, 5), 6)
    gray = cv2.copyMakeBorder(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 7, 7, 7, 7, cv2.BORDER_REFLECT_101)
    locations = [(int(round(x)), int(round(y))) for y, x in centres]  # top-left in the padded image
    return hog.compute(gray, locations=locations).reshape(len(locations), -1)


def run_implementations(data: dict) -> dict:
    """Descriptor and neighbour-search implementations on one sequence at the working size."""
    frames = data["dog"][0]
    small = [resize_max_side(f, 256) for f in frames]
    labels = [C.superpixels(f, n_segments=300) for f in small]
    out: dict[str, dict] = {}

    start = time.perf_counter()
    descriptors = [C.superpixel_descriptors(f, lab)[0] for f, lab in zip(small, labels)]
    out["descriptors_vectorised_ms_per_frame"] = round((time.perf_counter() - start) * 1e3 / len(small), 2)
    few = range(0, len(small), 10)
    start = time.perf_counter()
    for i in few:
        _reference_descriptors(small[i], labels[i])
    out["descriptors_reference_loop_ms_per_frame"] = round((time.perf_counter() - start) * 1e3 / len(few), 2)
    centres = [C.superpixel_descriptors(small[i], labels[i])[1] for i in few]
    start = time.perf_counter()
    for i, c in zip(few, centres):
        _opencv_hog(small[i], c)
    out["hog_alone_opencv_HOGDescriptor_ms_per_frame"] = round((time.perf_counter() - start) * 1e3 / len(few), 2)

    start = time.perf_counter()
    exact = C.transition_matrix(descriptors, per_frame=1)
    out["graph_exact_matmul_ms_per_frame"] = round((time.perf_counter() - start) * 1e3 / len(small), 2)
    for dims in (48, 24):
        start = time.perf_counter()
        approx = C.transition_matrix(descriptors, per_frame=1, dims=dims)
        ms = (time.perf_counter() - start) * 1e3 / len(small)
        rows = range(0, exact.shape[0], 7)
        recall = np.mean([len(np.intersect1d(exact[i].indices, approx[i].indices)) / exact[i].nnz for i in rows])
        out[f"graph_pca{dims}"] = {"ms_per_frame": round(ms, 2), "recall_of_exact_links": round(float(recall), 3)}

    from scipy.spatial import cKDTree

    start = time.perf_counter()
    for t in range(len(descriptors)):
        for s in range(max(0, t - 15), min(len(descriptors), t + 16)):
            cKDTree(descriptors[s]).query(descriptors[t], k=2 if s == t else 1)
    out["graph_neighbour_search_ckdtree_exact_ms_per_frame"] = round(
        (time.perf_counter() - start) * 1e3 / len(small), 2
    )

    superpixel_ms = {}
    for method in C.SUPERPIXEL_METHODS:
        start = time.perf_counter()
        counts = [C.superpixels(f, n_segments=300, method=method).max() + 1 for f in small[:20]]
        superpixel_ms[method] = {
            "ms_per_frame": round((time.perf_counter() - start) * 1e3 / 20, 2),
            "superpixels": round(float(np.mean(counts)), 1),
        }
    out["superpixels_256px_n300"] = superpixel_ms
    out["note"] = (
        "dog, frames at 256x144 (the working size), n_segments=300, per_frame=1; reference-loop rows on every 10th frame"
    )
    return out


# Peak resident memory is read from /proc/self/status (VmHWM): getrusage's ru_maxrss
# survives exec on Linux, so a child would report its parent's peak.
_MEMORY_CHILD = r"""
import json, sys, tracemalloc
sys.path.insert(0, sys.argv[1])
import numpy as np
from motionmasks.segment import Segmenter, plan_shots, segment_frames, segment_source
from motionmasks.video import read_frames
def peak_rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
folder, mode = sys.argv[2], sys.argv[3]
base = peak_rss_mib()
tracemalloc.start()
if mode == "frames":
    frames = np.stack([f for _, f in read_frames(folder)])
    maps = segment_frames(frames)
    n = len(maps)
else:
    n = sum(len(masks) for _, masks in segment_source(plan_shots(folder, 'shot', Segmenter()), Segmenter()))
peak_traced = tracemalloc.get_traced_memory()[1]
print(json.dumps({"frames": n, "peak_rss_mib": peak_rss_mib(), "peak_rss_after_imports_mib": base,
                  "tracemalloc_peak_mib": peak_traced / 2**20}))
"""


def run_memory() -> dict:
    """Peak memory of a 110-frame 854x480 shot (parkour's 100 frames, then 10 of them backwards)."""
    files = sorted((DAVIS / "JPEGImages" / "480p" / "parkour").glob("*.jpg"))
    order = files + files[-2 : -2 - (SHOT_FRAMES - len(files)) : -1]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, source in enumerate(order[:SHOT_FRAMES]):
            (Path(tmp) / f"{i:05d}.jpg").symlink_to(source)
        for mode, label in (("frames", "segment_frames_whole_shot_in_memory"), ("video", "segment_source_streaming")):
            result = subprocess.run(
                [sys.executable, "-c", _MEMORY_CHILD, str(ROOT), tmp, mode], capture_output=True, text=True, check=True
            )
            out[label] = {k: round(v, 1) if isinstance(v, float) else v for k, v in json.loads(result.stdout).items()}
    out["note"] = (
        "peak_rss: peak resident set (VmHWM) of a fresh process, imports included (given apart); "
        "tracemalloc: peak of Python/numpy allocations. segment_frames holds the 110 input frames "
        "(135 MB) and the 110 full-size float32 maps (180 MB) by its contract; segment_source holds only "
        "one part's working-size frames and yields its 8-bit working-size masks."
    )
    return out


def _defaults(function) -> dict:
    return {
        k: p.default
        for k, p in inspect.signature(function).parameters.items()
        if p.default is not p.empty and k != "timings"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1: one worker's cost)")
    parser.add_argument("--quick", action="store_true", help="only the default pipeline and the memory check")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "segmenter.json")
    args = parser.parse_args()
    if not DAVIS.is_dir():
        sys.exit(f"{DAVIS} is not here: this benchmark needs ../shared beside the checkout")
    cv2.setNumThreads(args.threads)
    load_before = os.getloadavg()

    data = {name: load(name) for name in SEQUENCES}
    print("default segmenter ...", flush=True)
    pipeline = run_pipeline(data)
    report = {
        "benchmark": "segmenter",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "input": "DAVIS-2016 dev (5 sequences, 330 frames), 854x480 JPEG; each sequence is one shot; masks only for scoring",
        "defaults": {
            "motion": _defaults(motion_module.motion_saliency),
            "consensus": _defaults(C.consensus_voting),
        },
        "pipeline": pipeline,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "opencv_threads": args.threads,
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "load_average_before": [round(x, 2) for x in load_before],
            "note": "2-core machine; see the load averages for what else ran",
            "versions": {
                pkg: version(pkg) for pkg in ("numpy", "scipy", "scikit-image", "opencv-contrib-python-headless")
            },
        },
    }
    if not args.quick:
        print("consensus choices (same saliency, 5 sequences) ...", flush=True)
        report["choices"] = run_choices(data)
        print("implementations ...", flush=True)
        report["implementations"] = run_implementations(data)
    print("peak memory, 110-frame 854x480 shot ...", flush=True)
    report["memory_110_frames_854x480"] = run_memory()
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    write_json(report, args.out)

    print(f"\n{'sequence':12s} {'J@0.4':>6s} {'J@0.5':>6s} {'J@0.7':>6s} {'ref@0.7':>7s} {'fps':>6s}")
    for name, r in pipeline["sequences"].items():
        print(
            f"{name:12s} {r['J@0.4']:6.3f} {r['J@0.5']:6.3f} {r['J@0.7']:6.3f} {r['reference_uNLC_J@0.7']:7.3f} {r['frames_per_s']:6.1f}"
        )
    m = pipeline["mean"]
    print(
        f"{'mean':12s} {m['J@0.4']:6.3f} {m['J@0.5']:6.3f} {m['J@0.7']:6.3f} {np.mean(list(REFERENCE_J07.values())):7.3f} {pipeline['frames_per_s']:6.1f}"
    )
    print(
        "ms/frame: "
        + ", ".join(f"{k} {v}" for k, v in pipeline["ms_per_frame"].items())
        + f"; total {pipeline['total_ms_per_frame']} ms/frame = {pipeline['frames_per_s']} frames/s"
    )
    for label, r in report["memory_110_frames_854x480"].items():
        if isinstance(r, dict):
            print(
                f"memory {label}: peak RSS {r['peak_rss_mib']} MiB (after imports {r['peak_rss_after_imports_mib']}), "
                f"tracemalloc peak {r['tracemalloc_peak_mib']} MiB"
            )
    print(f"load {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}; wrote {args.out}")


if __name__ == "__main__":
    main()
