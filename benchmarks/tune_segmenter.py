"""Parameter study of the label-free segmenter on the 30 DAVIS-2016 *train* sequences.

Tuning set: ../shared/data/davis2016-train (240p, 30 sequences). The 5 dev
sequences are scored once, for the chosen configuration only (``--dev``).
No label is used by the method; ground truth is only read to score.

Scoring is the pipeline's: ``plan_shots`` -> ``decode_parts`` -> ``shot_saliency``
-> ``shot_masks`` (8-bit, working size) -> ``formats.mask_at_size`` to the
ground-truth size -> ``p >= t`` -> IoU per frame, mean per sequence, mean over
sequences (thresholds 0.4, 0.5, 0.7).

A configuration is ``{"wms": working_max_side, "motion": {...}, "consensus":
{...}, "proto": {...}}`` where motion/consensus hold overrides of params.yaml.
``proto`` holds prototypes that are NOT in the package (defined below):
``sal_gamma`` (saliency ** g before voting), ``out_gamma`` (soft ** g after),
``appearance`` (blend of the votes with the per-shot colour model built from the
votes: since adopted as ``consensus.appearance``). With an empty ``proto`` the package's ``shot_masks`` is called as is.

Frames at the working size and the 8-bit saliency are cached under
/tmp/tune_segmenter_cache (per motion configuration), so consensus sweeps do
not recompute flow.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/tune_segmenter.py          # the study (train)
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/tune_segmenter.py --dev    # + one dev check of the best

Results: benchmarks/results/tune_segmenter.json (every configuration tried is
kept there and reused on a rerun).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from motionmasks import consensus as C  # noqa: E402
from motionmasks.evaluate import read_truth_mask  # noqa: E402
from motionmasks.formats import mask_at_size, quantise  # noqa: E402
from motionmasks.params import load_params  # noqa: E402
from motionmasks.segment import Segmenter, decode_parts, plan_shots, shot_masks, shot_saliency  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SPLITS = {
    "train": (DATA / "davis2016-train" / "JPEGImages" / "240p", DATA / "davis2016-train" / "Annotations" / "240p"),
    "dev": (DATA / "davis2016-dev" / "JPEGImages" / "480p", DATA / "davis2016-dev" / "Annotations" / "480p"),
}
CACHE = Path("/tmp/tune_segmenter_cache")
OUT = ROOT / "benchmarks" / "results" / "tune_segmenter.json"
THRESHOLDS = (0.4, 0.5, 0.7)
BASE = Segmenter.from_params(load_params(ROOT / "params.yaml"))
BASELINE = {"wms": BASE.working_max_side, "motion": {}, "consensus": {}, "proto": {}}


def key_of(config: dict) -> str:
    """The stored result's key: the overrides and the defaults they override (a run stored
    before params.yaml changed is not mistaken for one of today's defaults)."""
    base = {"motion": BASE.motion, "consensus": BASE.consensus, "shots": BASE.shots}
    return json.dumps({**config, "params.yaml": _hash(base)}, sort_keys=True)


def _hash(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- prototypes (not in the package)


def _otsu_remap(soft: np.ndarray, span: float, scope: str = "frame") -> np.ndarray:
    """Map each frame's (or the shot's) Otsu threshold of the soft map to 0.5, piecewise linearly.

    The threshold is clamped to [0.5 - span, 0.5 + span]; span 0 leaves the map unchanged.
    Label-free: the threshold comes from the map's own histogram.
    """
    out = np.empty_like(soft)
    u8 = quantise(soft)
    shot_t = cv2.threshold(u8.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0] / 255.0
    for t in range(len(soft)):
        th = shot_t if scope == "shot" else cv2.threshold(u8[t], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0] / 255.0
        th = float(np.clip(th, 0.5 - span, 0.5 + span))
        lo = soft[t] * (0.5 / max(th, 1e-6))
        hi = 0.5 + (soft[t] - th) * (0.5 / max(1.0 - th, 1e-6))
        out[t] = np.where(soft[t] < th, lo, hi)
    return np.clip(out, 0, 1)


def proto_masks(frames: np.ndarray, saliency_u8: np.ndarray, consensus: dict, proto: dict) -> np.ndarray:
    """``shot_masks`` with the prototypes of ``proto`` (8-bit, working size)."""
    sal = np.asarray(saliency_u8, np.float32) / 255.0
    if proto.get("sal_sub"):
        # subtract each frame's background level: its sal_sub-th percentile inside the border band
        band = int(round(float(proto.get("border", 0.125)) * min(sal.shape[1:])))
        inner = sal[:, band : sal.shape[1] - band, band : sal.shape[2] - band].reshape(len(sal), -1)
        level = np.percentile(inner, float(proto["sal_sub"]), axis=1)[:, None, None].astype(np.float32)
        sal = np.clip((sal - level) / np.maximum(1.0 - level, 1e-3), 0.0, 1.0)
    if proto.get("sal_gamma"):
        sal = sal ** float(proto["sal_gamma"])
    if not proto.get("appearance"):
        options = {**consensus, "working_max_side": None}
        soft = C.consensus_voting(frames, sal, **options)
    else:
        # consensus_voting with the final painting split open so that a colour model can be blended in
        o = {
            **dict(
                n_segments=300,
                compactness=10.0,
                sigma=5.0,
                method="seeds",
                window=15,
                per_frame=1,
                bandwidth=0.1,
                dims=None,
                iterations=50,
                refine_radius=8,
                refine_eps=1e-4,
                blob_threshold=0.7,
                blob_ratio=0.6,
            ),
            **consensus,
        }
        labels, descriptors, seeds = [], [], []
        for t in range(len(frames)):
            lab = C.superpixels(
                frames[t],
                n_segments=o["n_segments"],
                compactness=o["compactness"],
                sigma=o["sigma"],
                method=o["method"],
            )
            flat = lab.ravel()
            seeds.append(np.bincount(flat, np.clip(sal[t].ravel(), 0, 1)) / np.bincount(flat))
            labels.append(lab)
            descriptors.append(C.superpixel_descriptors(frames[t], lab)[0])
        matrix = C.transition_matrix(
            descriptors, window=o["window"], per_frame=o["per_frame"], bandwidth=o["bandwidth"], dims=o["dims"]
        )
        offsets = np.concatenate([[0], np.cumsum([len(d) for d in descriptors])])
        votes = C.vote(matrix, np.concatenate(seeds), offsets, iterations=o["iterations"])
        raw = np.stack([votes[offsets[t] : offsets[t + 1]][labels[t]] for t in range(len(frames))])
        post = C.colour_posterior(frames, raw)  # the package's model (consensus.appearance)
        a = float(proto["appearance"])
        soft = np.empty_like(raw)
        for t in range(len(frames)):
            sp_post = np.bincount(labels[t].ravel(), post[t].ravel()) / np.bincount(labels[t].ravel())
            mixed = (1 - a) * raw[t] + a * sp_post[labels[t]].astype(np.float32)
            if proto.get("appearance_mode") == "product":
                mixed = raw[t] * sp_post[labels[t]].astype(np.float32)
            mixed = mixed / max(float(mixed.max()), 1e-6)
            mixed = C.refine(frames[t], mixed.astype(np.float32), radius=o["refine_radius"], eps=o["refine_eps"])
            soft[t] = C.suppress_small_blobs(mixed, threshold=o["blob_threshold"], ratio=o["blob_ratio"])
    if proto.get("otsu"):
        soft = _otsu_remap(np.clip(soft, 0, 1), float(proto["otsu"]), proto.get("otsu_scope", "frame"))
    if proto.get("out_gamma"):
        soft = np.clip(soft, 0, 1) ** float(proto["out_gamma"])
    return quantise(soft)


# ---------------------------------------------------------------- per-sequence work (in workers)


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _frames(split: str, seq: str, wms: int):
    """Records' frames at the working size and the ground truth, cached on disk."""
    folder = CACHE / split / seq
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"frames_{wms}.npz"
    seg = Segmenter(shots=BASE.shots, working_max_side=wms, motion=BASE.motion, consensus=BASE.consensus)
    if not path.exists():
        records = plan_shots(SPLITS[split][0] / seq, seq, seg)
        parts = list(decode_parts(records))
        meta = [(r.first, r.last, r.width, r.height) for r, _ in parts]
        tmp = folder / f".frames_{wms}.{os.getpid()}.npz"
        np.savez(tmp, meta=np.array(meta), **{f"p{i}": f for i, (_, f) in enumerate(parts)})
        tmp.rename(path)
    with np.load(path) as z:
        meta = [tuple(int(v) for v in m) for m in z["meta"]]
        parts = [z[f"p{i}"] for i in range(len(meta))]
    gt_path = folder / "truth.npy"
    if not gt_path.exists():
        files = sorted((SPLITS[split][1] / seq).glob("*.png"))
        gts = np.stack([read_truth_mask(f) != 0 for f in files])
        tmp = folder / f".truth.{os.getpid()}.npy"
        np.save(tmp, gts)
        tmp.rename(gt_path)
    return meta, parts, np.load(gt_path)


def _saliency(split: str, seq: str, wms: int, motion: dict, parts) -> list[np.ndarray]:
    full = {**BASE.motion, **motion}
    path = CACHE / split / seq / f"sal_{wms}_{_hash(full)}.npz"
    if not path.exists():
        sal = [shot_saliency(f, full)[0] for f in parts]
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
        np.savez(tmp, **{f"p{i}": s for i, s in enumerate(sal)})
        tmp.rename(path)
    with np.load(path) as z:
        return [z[f"p{i}"] for i in range(len(parts))]


def score_one(args) -> tuple[str, dict]:
    split, seq, config = args
    start = time.perf_counter()
    meta, parts, gts = _frames(split, seq, config["wms"])
    sal = _saliency(split, seq, config["wms"], config["motion"], parts)
    consensus = {**BASE.consensus, **config["consensus"]}
    preds = [None] * len(gts)
    for (first, last, width, height), frames, s in zip(meta, parts, sal):
        masks = (
            proto_masks(frames, s, consensus, config["proto"]) if config["proto"] else shot_masks(frames, s, consensus)
        )
        for index, mask in zip(range(first, last + 1), masks):
            preds[index] = mask_at_size(mask, width, height)
    missing = [i for i, p in enumerate(preds) if p is None]
    if missing:
        raise RuntimeError(f"{seq}: no mask for frames {missing[:5]}")
    out = {}
    for th in THRESHOLDS:
        rows = []
        cut = int(np.ceil(th * 255.0 - 1e-9))  # p/255 >= th  <=>  p >= cut (as evaluate's float64 compare)
        assert all(((c / 255.0) >= th) == (c >= cut) for c in range(256))
        for pred, gt in zip(preds, gts):
            p = pred >= cut
            n_p, n_g, inter = int(p.sum()), int(gt.sum()), int((p & gt).sum())
            union = n_p + n_g - inter
            rows.append(
                (
                    inter / union if union else 1.0,
                    inter / n_p if n_p else (1.0 if n_g == 0 else 0.0),
                    inter / n_g if n_g else 1.0,
                )
            )
        j, pr, rc = np.mean(rows, axis=0)
        out[f"J@{th}"], out[f"P@{th}"], out[f"R@{th}"] = round(float(j), 4), round(float(pr), 4), round(float(rc), 4)
    out["seconds"] = round(time.perf_counter() - start, 2)
    return seq, out


# ---------------------------------------------------------------- driver


def sequences(split: str) -> list[str]:
    root = SPLITS[split][0]
    seqs = sorted(p.name for p in root.iterdir() if p.is_dir())
    return sorted(seqs, key=lambda s: -len(list((root / s).glob("*.jpg"))))  # longest first: better balance


def load_results() -> dict:
    if OUT.exists():
        return json.loads(OUT.read_text())
    return {"runs": {}}


def save_results(results: dict) -> None:
    tmp = OUT.with_name(".tune_segmenter.json.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.rename(OUT)


def evaluate(pool, results: dict, config: dict, split: str = "train", label: str = "") -> dict:
    key = f"{split}|{key_of(config)}"
    if key in results["runs"]:
        return results["runs"][key]
    start = time.perf_counter()
    per = dict(pool.imap_unordered(score_one, [(split, s, config) for s in sequences(split)]))
    per = {s: per[s] for s in sorted(per)}
    mean = {
        k: round(float(np.mean([v[k] for v in per.values()])), 4) for k in next(iter(per.values())) if k != "seconds"
    }
    run = {
        "split": split,
        "label": label,
        "config": config,
        "mean": mean,
        "per_sequence": per,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    results["runs"][key] = run
    save_results(results)
    print(
        f"{split:5s} J@.4/.5/.7 = {mean['J@0.4']:.4f} {mean['J@0.5']:.4f} {mean['J@0.7']:.4f}  "
        f"P {mean['P@0.5']:.3f} R {mean['R@0.5']:.3f}  {run['wall_seconds']:5.1f}s  {label}",
        flush=True,
    )
    return run


def with_change(config: dict, group: str, name: str | None, value) -> dict:
    new = copy.deepcopy(config)
    if group == "wms":
        new["wms"] = value
    else:
        new[group][name] = value
    return new


# Coordinate descent: each step tries its values on top of the best configuration so far and keeps
# the best one only if it beats the incumbent's mean J@0.5 on train by at least MIN_GAIN.
MIN_GAIN = 0.002
PLAN = [
    ("consensus", "blob_ratio", [0.0, 0.3, 0.9]),
    ("consensus", "n_segments", [200, 400]),
    ("consensus", "window", [7, 30]),
    ("consensus", "per_frame", [2, 3]),
    ("consensus", "bandwidth", [0.05, 0.2, 0.4]),
    ("consensus", "iterations", [10, 25, 100]),
    ("consensus", "refine_radius", [0, 4, 12]),
    ("consensus", "refine_eps", [1e-3, 1e-5]),
    ("motion", "percentile", [90.0, 98.0, 99.5]),
    ("motion", "min_scale", [0.5, 2.0]),
    ("motion", "combine", ["median", "mean"]),
    ("motion", "neighbours", [2]),
    ("motion", "model", ["affine"]),
    ("motion", "ransac_threshold", [2.0]),
    ("motion", "min_inlier_fraction", [0.3]),
    ("motion", "box", [1, 9]),
    ("motion", "border", [0.0625]),
    ("motion", "flow_max_side", [256]),
    ("proto", "sal_gamma", [0.5, 2.0]),
    ("proto", "appearance", [0.3, 0.6]),
    ("proto", "out_gamma", [0.7, 1.4]),
    ("wms", None, [320]),
    # second round, added after the first: the directions that helped, further
    ("consensus", "window", [45, 60]),
    ("motion", "percentile", [85.0]),
    ("consensus", "iterations", [200, 400]),
    ("consensus", "bandwidth", [0.08, 0.13]),
    ("consensus", "blob_threshold", [0.5]),
    ("proto", "sal_sub", [50.0, 75.0, 90.0]),
    ("proto", "otsu", [0.1, 0.2, 0.3]),
]


def descend(pool, results: dict, plan=PLAN) -> dict:
    best = copy.deepcopy(BASELINE)
    best_j = evaluate(pool, results, best, label="baseline (params.yaml)")["mean"]["J@0.5"]
    steps = []
    for group, name, values in plan:
        tried = []
        for value in values:
            config = with_change(best, group, name, value)
            run = evaluate(pool, results, config, label=f"{group}.{name}={value}" if name else f"{group}={value}")
            tried.append((run["mean"]["J@0.5"], value, config))
        top_j, top_value, top_config = max(tried, key=lambda r: r[0])
        kept = top_j >= best_j + MIN_GAIN
        steps.append(
            {
                "step": f"{group}.{name}" if name else group,
                "incumbent_J@0.5": best_j,
                "tried": {str(v): j for j, v, _ in tried},
                "kept": top_value if kept else None,
            }
        )
        if kept:
            print(f"  -> keep {group}.{name}={top_value}: {best_j:.4f} -> {top_j:.4f}", flush=True)
            best, best_j = top_config, top_j
    results["descent"] = steps
    results["best"] = {"config": best, "J@0.5": best_j}
    save_results(results)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dev", action="store_true", help="score the best configuration on dev once, at the end")
    parser.add_argument("--only-baseline", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    results = load_results()
    results["about"] = {
        "command": "OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/tune_segmenter.py"
        + (" --dev" if args.dev else ""),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg()},
        "tuning_set": "davis2016-train 240p, 30 sequences (427x240)",
        "held_out": "davis2016-dev 480p, 5 sequences: only the chosen configuration, once",
        "baseline": "params.yaml as of this study; config = overrides of it",
        "proto_note": "configs with a non-empty 'proto' use code that is only in this script, not in the package",
        "min_gain": MIN_GAIN,
    }
    with mp.get_context("fork").Pool(args.workers, initializer=_init_worker) as pool:
        if args.only_baseline:
            evaluate(pool, results, BASELINE, label="baseline (params.yaml)")
            return
        best = descend(pool, results)
        print("best:", key_of(best))
        if args.dev:
            evaluate(pool, results, best, split="dev", label="best on dev")


if __name__ == "__main__":
    main()
