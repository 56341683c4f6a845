"""Pascal VOC detection average precision (the transfer stage's metric, paper §6).

Per class: detections of all images sorted by score (highest first); each is
a true positive when its best-overlapping ground-truth box of that class in its
image has IoU >= ``iou_threshold`` and was not matched yet by a higher-scored
detection, else a false positive. A detection whose best match is a box marked
*difficult* counts as neither (VOC's rule), and difficult boxes are not in the
recall's denominator. Two ways to sum the precision-recall curve:

``area`` (VOC2010 and later)
    the area under the curve with precision made monotonically decreasing.
``11point`` (VOC2007)
    the mean over recall r in {0, 0.1, ..., 1} of the best precision at recall >= r.

Boxes are ``(x1, y1, x2, y2)`` in pixels with exclusive ends (area = (x2-x1)*(y2-y1));
VOC's XML uses inclusive 1-based corners, which the dataset reader converts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Truth:
    """Ground truth of one image: boxes (N, 4), labels (N,) int, difficult (N,) bool."""

    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


@dataclass(frozen=True)
class Detection:
    image: str
    label: int
    score: float
    box: tuple[float, float, float, float]


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with each of ``boxes`` (N, 4)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def average_precision(recall: np.ndarray, precision: np.ndarray, method: str = "area") -> float:
    """AP from a precision-recall curve (points in detection order)."""
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if method == "11point":
        return float(
            np.mean([precision[recall >= r].max() if (recall >= r).any() else 0.0 for r in np.linspace(0, 1, 11)])
        )
    if method != "area":
        raise ValueError(f"method must be 'area' or '11point', got {method!r}")
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # precision envelope: the best at this recall or beyond
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def class_ap(
    detections: Sequence[Detection],
    truth: Mapping[str, Truth],
    label: int,
    *,
    iou_threshold: float = 0.5,
    method: str = "area",
) -> float:
    """AP of one class over all images; NaN when the class has no non-difficult ground truth."""
    positives = sum(int(((t.labels == label) & ~t.difficult).sum()) for t in truth.values())
    if positives == 0:
        return float("nan")
    mine = sorted((d for d in detections if d.label == label), key=lambda d: -d.score)
    matched = {image: np.zeros(int((t.labels == label).sum()), bool) for image, t in truth.items()}
    tp, fp = [], []
    for detection in mine:
        t = truth.get(detection.image)
        hit = miss = 0
        if t is not None and (t.labels == label).any():
            boxes, difficult = t.boxes[t.labels == label], t.difficult[t.labels == label]
            overlaps = box_iou(np.asarray(detection.box, np.float64), boxes)
            best = int(np.argmax(overlaps))
            if overlaps[best] >= iou_threshold:
                if difficult[best]:
                    continue  # neither right nor wrong
                if not matched[detection.image][best]:
                    matched[detection.image][best] = True
                    hit = 1
                else:
                    miss = 1  # a duplicate of a box already found
            else:
                miss = 1
        else:
            miss = 1
        tp.append(hit)
        fp.append(miss)
    if not tp:
        return 0.0
    tps, fps = np.cumsum(tp), np.cumsum(fp)
    return average_precision(tps / positives, tps / np.maximum(tps + fps, 1e-12), method)


def mean_ap(
    detections: Sequence[Detection],
    truth: Mapping[str, Truth],
    labels: Sequence[int],
    *,
    iou_threshold: float = 0.5,
    method: str = "area",
) -> tuple[float, dict[int, float]]:
    """(mean AP over the classes that have ground truth, AP per class)."""
    per_class = {
        label: class_ap(detections, truth, label, iou_threshold=iou_threshold, method=method) for label in labels
    }
    scored = [ap for ap in per_class.values() if not np.isnan(ap)]
    return (float(np.mean(scored)) if scored else float("nan")), per_class
