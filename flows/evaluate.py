"""Stage ``evaluate``: score the pipeline's soft masks against whatever ground
truth the corpus has, and the shot split against the known cuts.

Ground truth, by video id:
- the synthetic corpus: ``<truth>/synthetic/<id>.masks.npz`` (always there);
- a DAVIS-layout folder named by ``evaluate.davis_annotations``
  (``<folder>/<id>/NNNNN.png``, 0/255) for videos whose id is a sequence name
  (e.g. DAVIS frame folders listed in your manifest).

Writes DVC metrics (mean J at each threshold, precision, recall, the motion
saliency's own J for comparison, the ConvNet's single-frame masks (the
student) and a fixed centred ellipse (the prior a student must beat) at
``evaluate.threshold``, cut precision/recall), a per-video table for DVC
plots, and a gallery PNG (frame | soft map | ground truth).
"""

from __future__ import annotations

if __name__ == "__main__":  # a stage process started by DVC: before the slow imports
    from flows.lifeline import die_with_parent
    from flows.prefect_api import report_to_project_api

    die_with_parent()  # never outlive the run
    report_to_project_api(".")  # DVC runs it in the project folder: its runs are recorded there

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.stage import publish_failures, publish_metrics, stage_main
from models.checkpoint import load_masknet
from motionmasks.atomic import atomic_path
from motionmasks.convnet import centred_prior, predict_masks
from motionmasks.evaluate import frame_scores, overlay_gallery, read_truth_mask
from motionmasks.formats import (
    mask_at_size,
    read_map_shard,
    read_masks,
    read_shot_records,
    read_table,
    safe_name,
    write_table,
)
from motionmasks.params import EvaluateParams, Params
from motionmasks.video import frame_files, read_frames


def load_truth(video: str, truth_dir: Path, davis: Path | None) -> dict[int, np.ndarray] | None:
    """Ground-truth masks of ``video`` by frame index, or None when it has none."""
    synthetic = truth_dir / "synthetic" / f"{safe_name(video)}.masks.npz"
    if synthetic.is_file():
        masks, frames = read_masks(synthetic)
        return {int(f): m.astype(bool) for f, m in zip(frames, masks)}
    # the sanitised name, never the raw id: an id like "../../x" must not reach outside the folder
    folder = davis / safe_name(video) if davis is not None else None
    if folder is not None and folder.is_dir():
        return {i: read_truth_mask(path) for i, path in enumerate(frame_files(folder))}
    return None


def cut_scores(found: pd.DataFrame, truth: pd.DataFrame, tolerance: int = 1) -> dict[str, float]:
    """Cut precision/recall within ±tolerance frames over the videos with known cuts."""
    hits = n_found = n_true = 0
    for video, expected in truth.groupby("video"):
        true_cuts = sorted(expected["first"])[1:]
        got = sorted(found.loc[found["video"] == video, "first"])[1:]
        n_true, n_found = n_true + len(true_cuts), n_found + len(got)
        unmatched = list(true_cuts)
        for cut in got:
            match = next((t for t in unmatched if abs(t - cut) <= tolerance), None)
            if match is not None:
                unmatched.remove(match)
                hits += 1
    return {"cut_precision": hits / n_found if n_found else 1.0, "cut_recall": hits / n_true if n_true else 1.0}


def score_video(
    video: str,
    source: str,
    shard_path: str,
    motion_path: str,
    truth: dict[int, np.ndarray],
    params: EvaluateParams,
    model: torch.nn.Module | None = None,
    calibration: float = 0.5,
) -> tuple[dict, tuple]:
    """One video's scores (row) and its gallery entry (middle scored frame).

    With ``model``, the ConvNet's masks of the same frames (each from that
    frame alone) are scored too, beside the centred prior.
    """
    shard = read_map_shard(shard_path, quantised=True)
    motion = read_map_shard(motion_path, quantised=True)
    scored = [k for k, frame in enumerate(shard.frames) if int(frame) in truth]
    if not scored:
        raise ValueError(f"none of its {len(shard.frames)} segmented frames has ground truth")
    scores: dict[float, list[tuple[float, float, float]]] = {t: [] for t in params.thresholds}
    saliency_scores = []
    for k in scored:
        gt = truth[int(shard.frames[k])]
        # the same full-size 8-bit mask `motionmasks segment` writes, scored as `motionmasks score` does
        soft = mask_at_size(shard.maps[k], gt.shape[1], gt.shape[0]) / 255.0
        for t in params.thresholds:
            scores[t].append(frame_scores(soft >= t, gt))
        saliency = mask_at_size(motion.maps[k], gt.shape[1], gt.shape[0]) / 255.0
        saliency_scores.append(frame_scores(saliency >= params.threshold, gt)[0])
    row: dict = {"video": video, "frames": len(scored)}
    for t in params.thresholds:
        iou, precision, recall = np.mean(scores[t], axis=0)
        row[f"J@{t}"], row[f"precision@{t}"], row[f"recall@{t}"] = float(iou), float(precision), float(recall)
    row["J"] = row[f"J@{params.threshold}"]  # the plotted one
    row["saliency_J"] = float(np.mean(saliency_scores))
    if model is not None:
        frames = [int(shard.frames[k]) for k in scored]
        row.update(student_scores(model, source, frames, truth, params.threshold, calibration))
    k = scored[len(scored) // 2]
    frame = next(read_frames(source, start=int(shard.frames[k]), stop=int(shard.frames[k]) + 1))[1]
    # the ConvNet's mask of the same frame, from that frame alone (the gallery's third column)
    student = next(predict_masks(model, [frame], threshold=calibration)) / 255.0 if model is not None else None
    entry = (
        f"{video} #{int(shard.frames[k])} J={row['J']:.2f}",
        frame,
        shard.maps[k] / 255.0,
        truth[int(shard.frames[k])],
        student,
    )
    return row, entry


def student_scores(
    model: torch.nn.Module,
    source: str,
    frames: list[int],
    truth: dict[int, np.ndarray],
    threshold: float,
    calibration: float = 0.5,
) -> dict[str, float]:
    """J, precision and recall of the ConvNet's single-frame masks, and J of the centred prior, on ``frames``.

    The masks are those ``motionmasks segment --checkpoint`` writes (calibrated by the train stage).
    """
    wanted = set(frames)
    pictures = (frame for index, frame in read_frames(source, stop=max(frames) + 1) if index in wanted)
    student, prior = [], []
    for index, soft in zip(sorted(wanted), predict_masks(model, pictures, threshold=calibration)):
        gt = truth[index]
        student.append(frame_scores(soft >= math.ceil(threshold * 255), gt))
        prior.append(frame_scores(centred_prior(gt.shape[1], gt.shape[0]) > 0, gt)[0])
    iou, precision, recall = np.mean(student, axis=0)
    return {
        "student_J": float(iou),
        "student_precision": float(precision),
        "student_recall": float(recall),
        "prior_J": float(np.mean(prior)),
    }


def write_gallery(entries: list[tuple], path: Path) -> None:
    if entries:
        overlay_gallery(entries, path)
        return
    # Nothing to show (no video with ground truth): say so in the image DVC expects.
    image = np.full((120, 720, 3), 64, np.uint8)
    cv2.putText(
        image,
        "no video with ground truth in this run",
        (20, 68),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.8,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"{path}: could not write the gallery")


@flow(name="evaluate", log_prints=True)
def evaluate(
    consensus_index_path: Path,
    motion_index_path: Path,
    shots_path: Path,
    truth_dir: Path,
    per_video_path: Path,
    gallery_path: Path,
    failures_path: Path,
    metrics_path: Path,
    params: EvaluateParams,
    model_path: Path | None = None,
) -> dict:
    logger = get_run_logger()
    model, info = load_masknet(model_path) if model_path is not None else (None, {})
    davis = Path(params.davis_annotations) if params.davis_annotations else None
    motion_paths: dict[str, str] = dict(
        read_table(motion_index_path)[["video", "path"]].drop_duplicates().itertuples(index=False)
    )
    masks: dict[str, str] = dict(read_table(consensus_index_path)[["video", "path"]].itertuples(index=False))
    rows: list[dict] = []
    gallery: list[tuple] = []
    failures: list[dict] = []
    # Every video the run split and that has ground truth is expected here: one
    # that failed upstream is reported, not silently left out of the means.
    sources = {r.video: r.source for r in read_shot_records(shots_path)}
    for video in sorted(sources):
        try:
            truth = load_truth(video, truth_dir, davis)
            if truth is None:
                continue
            if video not in masks:
                raise ValueError("no soft masks: it failed in an earlier stage (see their failures reports)")
            row, entry = score_video(
                video,
                sources[video],
                masks[video],
                motion_paths[video],
                truth,
                params,
                model,
                info.get("threshold", 0.5),
            )
        except Exception as exc:  # one video's problem never stops the others
            failures.append({"item": video, "reason": f"{video}: {exc}"})
            logger.warning("evaluate failed: %s: %s", video, exc)
            continue
        rows.append(row)
        if len(gallery) < params.gallery_videos:
            gallery.append(entry)
    table = pd.DataFrame(rows)
    write_table(table, per_video_path)
    write_gallery(gallery, gallery_path)
    publish_failures("evaluate", pd.DataFrame(failures), failures_path)
    metrics: dict = {
        "videos_scored": len(table),
        "videos_failed": len(failures),
        "frames_scored": int(table["frames"].sum()) if len(table) else 0,
    }
    if len(table):
        for t in params.thresholds:
            metrics[f"mean_J@{t}"] = round(float(table[f"J@{t}"].mean()), 4)
        metrics["mean_precision"] = round(float(table[f"precision@{params.threshold}"].mean()), 4)
        metrics["mean_recall"] = round(float(table[f"recall@{params.threshold}"].mean()), 4)
        metrics["mean_saliency_J"] = round(float(table["saliency_J"].mean()), 4)
        if "student_J" in table:  # the ConvNet versus its teacher (the consensus masks above) and the prior
            for name in ("student_J", "student_precision", "student_recall", "prior_J"):
                metrics[f"mean_{name}"] = round(float(table[name].mean()), 4)
    truth_shots = truth_dir / "truth_shots.parquet"
    if truth_shots.is_file():
        records = read_shot_records(shots_path)
        # a shot starts at its part 0; later parts of a long shot are not cuts
        found = pd.DataFrame(
            [{"video": r.video, "first": r.first} for r in records if r.part == 0], columns=["video", "first"]
        )
        true_cuts = read_table(truth_shots)
        true_cuts = true_cuts[true_cuts["video"].isin(found["video"])]  # only videos this run split
        if len(true_cuts):
            metrics.update({k: round(v, 4) for k, v in cut_scores(found, true_cuts).items()})
    publish_metrics("evaluate", metrics, metrics_path)
    if len(table):
        shown = table.round(3).astype(str)
        lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
        lines += ["| " + " | ".join(r) + " |" for r in shown.itertuples(index=False)]
        create_markdown_artifact("\n".join(lines), key="evaluate-per-video")
    logger.info("evaluate: %s", metrics)
    return metrics


def _run(args, params: Params) -> None:
    evaluate(
        args.consensus_index,
        args.motion_index,
        args.shots,
        args.truth,
        args.per_video,
        args.gallery,
        args.failures,
        args.metrics,
        params.evaluate,
        args.model,
    )


def main() -> None:
    stage_main(
        "Score the soft masks and the shot split against the corpus's ground truth.",
        {
            "consensus_index": "consensus stage index (.parquet)",
            "motion_index": "motion stage index (.parquet)",
            "shots": "shot table (.parquet)",
            "truth": "corpus folder with synthetic/<id>.masks.npz and truth_shots.parquet",
            "per_video": "per-video scores to write (.csv, DVC plot)",
            "gallery": "gallery PNG to write",
            "model": "the trained mask ConvNet (.pt, from the train stage)",
            "failures": "failures report to write (.csv)",
            "metrics": "metrics JSON to write",
        },
        _run,
    )


if __name__ == "__main__":
    main()
