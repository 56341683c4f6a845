"""One segmenter lever at a time on DAVIS-2016, scored as the pipeline scores it
(``tune_segmenter.score_one``: the per-shot path, masks at the ground truth's size).

Each argument after the split is a JSON configuration of overrides, as in
``tune_segmenter.py`` (``{"consensus": {"appearance": 0.0}}``, ``{"proto": {...}}``).
Two more levers, by environment variable, for the colour model and GrabCut:

    CP='{"high": 0.9}'  colour_posterior's keyword arguments high and low (its bins are
                        consensus.appearance_bins now: {"consensus": {"appearance_bins": 16}})
    GC='{"w": 0.5}'     GrabCut per frame after refinement, blended with weight w

Prints one line per configuration (means at 0.4 / 0.5 / 0.7, precision and recall at
0.5) and one with J@0.5 per sequence. The numbers of ``results/segmenter_levers.json``
came from it, except the plane + parallax and forward-backward rows, whose prototypes
(in motionmasks/motion.py) were removed after measuring.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/segmenter_levers.py train '[{}, {"consensus": {"appearance": 0.0}}]'
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/segmenter_levers.py dev '[{}]'
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import functools  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tune_segmenter as T  # noqa: E402

from motionmasks import consensus as C  # noqa: E402


def _grabcut_refine(options: dict, refine, frame: np.ndarray, soft: np.ndarray, **kw) -> np.ndarray:
    """The package's refinement, then GrabCut initialised from the soft map, blended with it."""
    soft = refine(frame, soft, **kw)
    mask = np.full(soft.shape, cv2.GC_PR_BGD, np.uint8)
    mask[soft >= 0.5] = cv2.GC_PR_FGD
    mask[soft < options.get("bg", 0.1)] = cv2.GC_BGD
    mask[soft >= options.get("fg", 0.95)] = cv2.GC_FGD
    if not np.isin(mask, (cv2.GC_PR_FGD, cv2.GC_FGD)).any():
        return soft
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        image = np.ascontiguousarray(frame[..., ::-1])
        cv2.grabCut(image, mask, None, bgd, fgd, options.get("iters", 2), cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return soft
    hard = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
    weight = options.get("w", 0.5)
    return (1 - weight) * soft + weight * hard


# forked workers inherit these patches
if os.environ.get("GC"):
    C.refine = functools.partial(_grabcut_refine, json.loads(os.environ["GC"]), C.refine)
if os.environ.get("CP"):
    C.colour_posterior = functools.partial(C.colour_posterior, **json.loads(os.environ["CP"]))


def run(split: str, config: dict, pool) -> tuple[dict, dict, float]:
    start = time.perf_counter()
    per = dict(pool.imap_unordered(T.score_one, [(split, s, config) for s in T.sequences(split)]))
    mean = {
        k: round(float(np.mean([v[k] for v in per.values()])), 4) for k in next(iter(per.values())) if k != "seconds"
    }
    return mean, {s: per[s]["J@0.5"] for s in sorted(per)}, time.perf_counter() - start


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in T.SPLITS:
        raise SystemExit(f"usage: segmenter_levers.py {{{'|'.join(T.SPLITS)}}} '[CONFIG, ...]'")
    split, configs = sys.argv[1], json.loads(sys.argv[2])
    with mp.get_context("fork").Pool(2, initializer=T._init_worker) as pool:
        for change in configs:
            config = {"wms": T.BASELINE["wms"], "motion": {}, "consensus": {}, "proto": {}}
            for group, value in change.items():
                if isinstance(value, dict):
                    config[group].update(value)
                else:
                    config[group] = value
            mean, per, seconds = run(split, config, pool)
            extra = {k: os.environ[k] for k in ("CP", "GC") if os.environ.get(k)}
            print(
                json.dumps({"change": change, **extra, "split": split, **mean, "seconds": round(seconds)}), flush=True
            )
            print("   ", json.dumps(per), flush=True)


if __name__ == "__main__":
    main()
