"""Scoring of foreground masks against ground truth (the DAVIS-2016 region measure).

The measure
-----------
For one frame, with the prediction ``P`` and the ground truth ``G`` as boolean
masks and ``|.|`` the pixel count:

- IoU (Jaccard) ``|P & G| / |P | G|``, and 1 when both are empty (nothing to
  find, nothing found);
- precision ``|P & G| / |P|``; when ``P`` is empty it is 1 if ``G`` is empty
  too (nothing claimed, nothing missed) and 0 otherwise (the empty answer
  counts as wrong, so an all-empty predictor cannot score a perfect
  precision);
- recall ``|P & G| / |G|``, and 1 when ``G`` is empty (nothing to miss),
  whatever ``P`` is.

A sequence's J, precision and recall are the means of these over its frames;
a data set's score is the mean over sequences (each sequence weighs the same,
whatever its length), as in the DAVIS-2016 protocol.

Predictions are soft maps in [0, 1] (8-bit input is divided by 255) and are
binarised with ``p >= threshold``. The default 0.5 is the usual one; the
paper's trimap thresholds 0.4 and 0.7 are worth reporting too.

Ground truth is a binary mask image, 0/255 (DAVIS-2016) or 0/1, read by
:func:`read_truth_mask` alone: anything else (a mask with values 1-2 in its
background, a colour image) is refused with the values found, because
counting every nonzero pixel as foreground would score it silently wrong.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from motionmasks.atomic import atomic_path

_MAX_LISTED = 10  # names listed in an error before "and N more"


class ScoreError(ValueError):
    """Predictions and ground truth cannot be compared (missing, extra or mis-sized frames)."""


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two boolean masks.

    Parameters
    ----------
    pred, gt : ndarray of bool, shape (H, W)
        Predicted and ground-truth foreground (nonzero values count as True).

    Returns
    -------
    float
        ``|pred & gt| / |pred | gt|`` in [0, 1]; 1.0 when both masks are empty.

    Raises
    ------
    ScoreError
        If the shapes differ.
    """
    return frame_scores(pred, gt)[0]


def frame_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """IoU, precision and recall of one predicted mask against its ground truth.

    Parameters
    ----------
    pred, gt : ndarray of bool, shape (H, W)
        Predicted and ground-truth foreground (nonzero values count as True).

    Returns
    -------
    (iou, precision, recall) : tuple of float, each in [0, 1]
        Conventions for empty masks (see the module docstring): IoU = 1 when
        both are empty; precision = 1 when both are empty and 0 when only the
        prediction is; recall = 1 whenever the ground truth is empty.

    Raises
    ------
    ScoreError
        If the shapes differ.
    """
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ScoreError(
            f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}; "
            "resize the prediction to the ground-truth size before scoring"
        )
    n_pred = int(np.count_nonzero(pred))
    n_gt = int(np.count_nonzero(gt))
    inter = int(np.count_nonzero(pred & gt))
    union = n_pred + n_gt - inter
    iou_value = inter / union if union else 1.0
    if n_pred:
        precision = inter / n_pred
    else:
        precision = 1.0 if n_gt == 0 else 0.0
    recall = inter / n_gt if n_gt else 1.0
    return iou_value, precision, recall


def _soft_to_unit(pred: np.ndarray) -> np.ndarray:
    """Return a prediction as float in [0, 1]: 8/16-bit integers are scaled by their maximum."""
    pred = np.asarray(pred)
    if pred.dtype == np.bool_:
        return pred.astype(np.float64)
    if pred.dtype == np.uint8:
        # float64 so that e.g. 102/255 equals the literal 0.4 exactly and ``>=`` is predictable
        return pred.astype(np.float64) / 255.0
    if pred.dtype == np.uint16:
        return pred.astype(np.float64) / 65535.0
    if not np.issubdtype(pred.dtype, np.floating):
        raise ScoreError(f"prediction dtype {pred.dtype} is not supported; give floats in [0, 1] or uint8 0-255")
    if pred.size and not (np.isfinite(pred).all() and pred.min() >= 0.0 and pred.max() <= 1.0):
        raise ScoreError(
            f"float prediction values must lie in [0, 1] (got min {pred.min():g}, max {pred.max():g}); "
            "divide 0-255 maps by 255 and replace NaN/inf before scoring"
        )
    return pred


def score_sequence(preds: Iterable[np.ndarray], gts: Iterable[np.ndarray], *, threshold: float = 0.5) -> dict:
    """Score one sequence of soft predictions against its ground-truth masks.

    Parameters
    ----------
    preds : iterable of ndarray, each (H, W)
        Soft foreground maps: float in [0, 1], or uint8 0-255 (divided by 255),
        or bool. Binarised with ``p >= threshold``.
    gts : iterable of ndarray, each (H, W)
        Ground-truth masks, any dtype; nonzero is foreground. Same length and
        per-frame shape as ``preds``.
    threshold : float, default 0.5
        Binarisation threshold in [0, 1] (the trimap values 0.4 and 0.7 are
        the other ones worth reporting).

    Returns
    -------
    dict
        ``{"J": mean IoU, "precision": mean precision, "recall": mean recall,
        "frames": number of frames}``, means over frames.

    Raises
    ------
    ScoreError
        If the two sequences differ in length, a frame's shapes differ, a
        prediction is out of range, or the sequence is empty.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ScoreError(f"threshold must lie in [0, 1], got {threshold}")
    scores: list[tuple[float, float, float]] = []
    pred_iter, gt_iter, end = iter(preds), iter(gts), object()
    while True:
        pred = next(pred_iter, end)
        gt = next(gt_iter, end)
        if pred is end and gt is end:
            break
        if pred is end or gt is end:
            longer = "ground truth" if pred is end else "predictions"
            raise ScoreError(
                f"{longer} have more frames than the other side (first unmatched frame: "
                f"position {len(scores)}); give one prediction per ground-truth frame"
            )
        pred = _soft_to_unit(np.asarray(pred))
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise ScoreError(
                f"frame at position {len(scores)}: prediction shape {pred.shape} differs from "
                f"ground truth shape {gt.shape}; resize the prediction to the ground-truth size"
            )
        scores.append(frame_scores(pred >= threshold, gt != 0))
    if not scores:
        raise ScoreError("the sequence has no frames; nothing to score")
    j, precision, recall = np.mean(np.asarray(scores, dtype=np.float64), axis=0)
    return {"J": float(j), "precision": float(precision), "recall": float(recall), "frames": len(scores)}


def _listed(names: Sequence[str]) -> str:
    """``a, b, c`` with at most _MAX_LISTED names, then ``and N more``."""
    names = list(names)
    text = ", ".join(names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        text += f" and {len(names) - _MAX_LISTED} more"
    return text


def _visible(entries: Iterable[Path]) -> list[Path]:
    # names starting with "." are temporaries of the atomic writers (formats.atomic_path/atomic_dir)
    return sorted(p for p in entries if not p.name.startswith("."))


def _png_frames(folder: Path) -> dict[str, Path]:
    """PNG frames of a sequence folder by frame name (the stem: ``00000.png`` and ``00000.PNG`` are one frame)."""
    frames: dict[str, Path] = {}
    for p in _visible(folder.iterdir()):
        if p.suffix.lower() != ".png" or not p.is_file():
            continue
        if p.stem in frames:
            raise ScoreError(f"{folder}: two files for frame {p.stem}: {frames[p.stem].name} and {p.name}; keep one")
        frames[p.stem] = p
    return frames


def _read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ScoreError(f"{path}: cannot be read as an image; rewrite it as a PNG")
    return image


def read_truth_mask(path: str | os.PathLike) -> np.ndarray:
    """A ground-truth mask file as a boolean array (H, W): the one reader of ground truth.

    Accepted: a single-channel (or grey stored as colour) 8- or 16-bit image
    whose values are 0/255 (0/65535) or 0/1. Anything else raises :class:`ScoreError` naming the file
    and the values found, so a mask with a noisy background (values 1-2) or a
    multi-object colour annotation never scores silently wrong.
    """
    path = Path(path)
    image = _read_png(path)
    if image.ndim == 3:
        colour = image[..., :3]  # alpha is no label
        if not (colour == colour[..., :1]).all():
            raise ScoreError(
                f"{path}: ground truth is a colour image; give a binary mask (0/255 or 0/1, one "
                "channel), e.g. one object's mask of a multi-object annotation"
            )
        image = colour[..., 0]
    if image.dtype not in (np.uint8, np.uint16):
        raise ScoreError(f"{path}: ground truth is {image.dtype}; give a binary mask PNG (0/255 or 0/1)")
    top = int(np.iinfo(image.dtype).max)  # 255, or 65535 for 16-bit masks
    present = np.flatnonzero(np.bincount(image.ravel(), minlength=top + 1))
    if not (set(present) <= {0, top} or set(present) <= {0, 1}):
        shown = ", ".join(str(v) for v in present[:8]) + (f" and {len(present) - 8} more" if len(present) > 8 else "")
        raise ScoreError(
            f"{path}: ground truth must be binary, 0/{top} or 0/1, but holds the values {shown}; "
            "binarise it (e.g. mask > 127) before scoring"
        )
    return image > 0


def score_folders(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, *, threshold: float = 0.5) -> dict:
    """Score folders of per-frame PNG predictions in the DAVIS layout.

    Both folders hold ``<seq>/<frame>.png``. The sequences scored are the
    subfolders of ``pred_dir`` (names starting with "." are ignored), so a
    subset of the ground truth can be scored; within a sequence the PNG file
    names must match one to one.

    Parameters
    ----------
    pred_dir : path
        Predictions: single-channel PNGs, 8-bit (0-255, divided by 255) or
        16-bit (divided by 65535), soft or binary.
    gt_dir : path
        Ground truth, e.g. ``DAVIS/Annotations/480p``: binary PNGs, 0/255 or
        0/1 (see :func:`read_truth_mask`).
    threshold : float, default 0.5
        Predictions are foreground where ``p >= threshold``.

    Returns
    -------
    dict
        ``{"sequences": {seq: {"J", "precision", "recall", "frames"}},
        "mean_J", "mean_precision", "mean_recall": means over sequences,
        "threshold": threshold}``.

    Raises
    ------
    ScoreError
        If a folder is missing or empty, a prediction sequence has no
        ground-truth folder, frames are missing or extra on either side, or a
        prediction's size differs from its ground truth. The message names the
        sequences and frames (all problems found, not only the first).
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for name, folder in (("prediction", pred_dir), ("ground-truth", gt_dir)):
        if not folder.is_dir():
            raise ScoreError(f"{name} folder {folder} does not exist; pass the folder that holds <seq>/<frame>.png")
    sequences = [p.name for p in _visible(pred_dir.iterdir()) if p.is_dir()]
    if not sequences:
        raise ScoreError(f"{pred_dir} has no sequence subfolders; predictions go in <pred_dir>/<seq>/<frame>.png")
    unknown = [s for s in sequences if not (gt_dir / s).is_dir()]
    if unknown:
        raise ScoreError(
            f"prediction sequences with no ground-truth folder in {gt_dir}: {_listed(unknown)}; "
            "remove them from the predictions or point gt_dir at the right annotations"
        )

    # Check the frame lists of every sequence before reading any pixel, and report all of it at once.
    problems, pairs = [], {}
    for seq in sequences:
        pred_frames, gt_frames = _png_frames(pred_dir / seq), _png_frames(gt_dir / seq)
        missing = sorted(gt_frames[k].name for k in gt_frames.keys() - pred_frames.keys())
        extra = sorted(pred_frames[k].name for k in pred_frames.keys() - gt_frames.keys())
        if missing:
            problems.append(f"{seq}: {len(missing)} ground-truth frame(s) have no prediction: {_listed(missing)}")
        if extra:
            problems.append(f"{seq}: {len(extra)} prediction(s) have no ground truth: {_listed(extra)}")
        if not gt_frames and not extra:
            problems.append(f"{seq}: no PNG frames in {gt_dir / seq} or {pred_dir / seq}")
        pairs[seq] = [(pred_frames[n], gt_frames[n]) for n in sorted(pred_frames.keys() & gt_frames.keys())]
    if problems:
        raise ScoreError(
            "predictions and ground truth do not match:\n  "
            + "\n  ".join(problems)
            + "\nwrite one prediction PNG per ground-truth PNG, with the same names"
        )

    results, mismatched = {}, []
    for seq in sequences:
        preds, gts, bad = [], [], []
        for pred_path, gt_path in pairs[seq]:
            pred, gt = _read_png(pred_path), read_truth_mask(gt_path)
            if pred.ndim != 2:
                raise ScoreError(f"{pred_path}: prediction has shape {pred.shape}; write single-channel PNGs")
            if pred.shape != gt.shape:
                bad.append(f"{pred_path.name} ({pred.shape[1]}x{pred.shape[0]} vs {gt.shape[1]}x{gt.shape[0]})")
                continue
            preds.append(pred)
            gts.append(gt)
        if bad:
            mismatched.append(
                f"{seq}: {len(bad)} frame(s) differ in size (prediction vs ground truth, WxH): {_listed(bad)}"
            )
        elif not mismatched:  # once something is wrong, only keep collecting the problems
            results[seq] = score_sequence(preds, gts, threshold=threshold)
    if mismatched:
        raise ScoreError(
            "prediction sizes differ from the ground truth:\n  "
            + "\n  ".join(mismatched)
            + "\nresize the predictions to the ground-truth size (e.g. cv2.resize) before writing them"
        )

    per_seq = list(results.values())
    return {
        "sequences": results,
        "mean_J": float(np.mean([r["J"] for r in per_seq])),
        "mean_precision": float(np.mean([r["precision"] for r in per_seq])),
        "mean_recall": float(np.mean([r["recall"] for r in per_seq])),
        "threshold": threshold,
    }


def _tile(image: np.ndarray, width: int, height: int, interpolation: int) -> np.ndarray:
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _put_caption(tile: np.ndarray, caption: str) -> None:
    """Draw ``caption`` white on a black band across the tile's top, so it reads on any frame."""
    # A band rather than a thick black outline: OpenCV 5 renders thicker text wider, so an outline drawn
    # with thickness 3 does not line up with the thickness-1 text on top of it.
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    (width, height), baseline = cv2.getTextSize(caption, font, scale, 1)
    band = min(tile.shape[0], height + baseline + 6)
    right = min(tile.shape[1], width + 8)
    tile[:band, :right] = (tile[:band, :right] * 0.3).astype(np.uint8)
    cv2.putText(tile, caption, (4, height + 3), font, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _heat_tile(base: np.ndarray, soft_map: np.ndarray, width: int, height: int) -> np.ndarray:
    """A soft map in [0, 1] as OpenCV's TURBO heat map over the frame's tile."""
    values = np.nan_to_num(np.clip(np.asarray(soft_map, dtype=np.float32), 0.0, 1.0))
    heat = cv2.applyColorMap(
        (_tile(values, width, height, cv2.INTER_LINEAR) * 255).round().astype(np.uint8), cv2.COLORMAP_TURBO
    )
    return cv2.addWeighted(base, 0.4, heat, 0.6, 0.0)


def overlay_gallery(
    rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]
    | list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]],
    out_path: str | os.PathLike,
    *,
    tile_width: int = 240,
) -> None:
    """Write one PNG that shows frames, their soft maps and their ground truth side by side.

    Each row is three tiles of ``tile_width`` pixels: the frame with its
    caption, the soft map as a heat map (OpenCV's TURBO colour map) blended
    over the frame, and the ground truth in green over the dimmed frame (a
    plain grey tile when there is no ground truth). When a row carries a
    second soft map (the ConvNet's), it is a fourth tile, as a heat map too,
    before the ground truth. The maps and the mask may have any resolution;
    they are resized to the frame's tile.

    Parameters
    ----------
    rows : list of (caption, frame, soft_map, gt) or (caption, frame, soft_map, gt, second_map)
        caption : str, drawn on the frame tile (ASCII; OpenCV's Hershey font).
        frame : ndarray of uint8, shape (H, W, 3), RGB.
        soft_map : ndarray of float, shape (h, w), values in [0, 1] (clipped).
        gt : ndarray of bool, shape (h', w'), or None.
        second_map : ndarray of float, shape (h'', w''), values in [0, 1], or None (a grey tile).
    out_path : path
        Where to write the PNG (atomically, via ``formats.atomic_path``).
    tile_width : int, default 240
        Width of each tile in pixels. A row is ``round(H * tile_width / W)``
        pixels high (at least 1), so the image is ``3 * tile_width`` wide (4
        with second maps) and as high as its rows together.

    Raises
    ------
    ValueError
        If ``rows`` is empty, ``out_path`` is not a ``.png``, or a row's arrays
        have the wrong shape or dtype (the message names the row).
    """
    out_path = Path(out_path)
    if not rows:
        raise ValueError("overlay_gallery needs at least one row")
    if out_path.suffix.lower() != ".png":
        raise ValueError(f"{out_path}: the gallery is written as PNG; give a path ending in .png")
    if tile_width < 1:
        raise ValueError(f"tile_width must be a positive number of pixels, got {tile_width}")

    second_maps = any(len(row) > 4 and row[4] is not None for row in rows)
    strips = []
    for i, (caption, frame, soft_map, gt, *second) in enumerate(rows):
        where = f"row {i} ({caption!r})"
        frame = np.asarray(frame)
        soft_map = np.asarray(soft_map, dtype=np.float32)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"{where}: frame must be uint8 (H, W, 3) RGB, got {frame.dtype} {frame.shape}")
        if soft_map.ndim != 2:
            raise ValueError(f"{where}: soft map must be 2-D (h, w), got shape {soft_map.shape}")
        height = max(1, round(frame.shape[0] * tile_width / frame.shape[1]))

        base = _tile(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), tile_width, height, cv2.INTER_AREA)
        map_tile = _heat_tile(base, soft_map, tile_width, height)
        tiles = [map_tile]
        if second_maps:
            other = second[0] if second else None
            if other is None:
                tiles.append(np.full_like(base, 128))
            else:
                tiles.append(_heat_tile(base, np.asarray(other, dtype=np.float32), tile_width, height))

        if gt is None:
            gt_tile = np.full_like(base, 128)
        else:
            gt = np.asarray(gt)
            if gt.ndim != 2:
                raise ValueError(f"{where}: ground truth must be 2-D (h, w) bool or None, got shape {gt.shape}")
            # nearest keeps the mask binary; dimming the background makes the green region stand out
            fg = _tile((gt != 0).astype(np.uint8), tile_width, height, cv2.INTER_NEAREST).astype(bool)
            gt_tile = (base * 0.4).astype(np.uint8)
            gt_tile[fg] = (0.5 * base[fg] + 0.5 * np.array([0, 255, 0])).astype(np.uint8)

        frame_tile = base.copy()
        _put_caption(frame_tile, str(caption))
        strips.append(np.hstack([frame_tile, *tiles, gt_tile]))

    gallery = np.vstack(strips)
    with atomic_path(out_path) as tmp:
        if not cv2.imwrite(str(tmp), gallery):
            raise OSError(f"OpenCV could not write {out_path}")
