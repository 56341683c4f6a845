"""VOC average precision against hand-computed cases."""

import math

import numpy as np
import pytest

from motionmasks.voc_ap import Detection, Truth, average_precision, box_iou, class_ap, mean_ap


def _truth(*boxes, labels=None, difficult=None):
    n = len(boxes)
    return Truth(
        np.array(boxes, np.float64).reshape(-1, 4),
        np.array(labels if labels is not None else [1] * n),
        np.array(difficult if difficult is not None else [False] * n),
    )


TRUTH = {"a": _truth((0, 0, 10, 10)), "b": _truth((20, 20, 40, 40))}
# right, wrong, right: recall 0.5, 0.5, 1; precision 1, 1/2, 2/3
DETECTIONS = [
    Detection("a", 1, 0.9, (0, 0, 10, 10)),
    Detection("a", 1, 0.8, (50, 50, 60, 60)),
    Detection("b", 1, 0.7, (21, 21, 40, 40)),
]


def test_box_iou():
    assert box_iou(np.array([0, 0, 10, 10]), np.array([[5, 0, 15, 10], [20, 20, 30, 30]])).tolist() == [1 / 3, 0.0]


def test_area_ap_by_hand():
    # envelope: precision 1 up to recall 0.5, 2/3 up to 1 -> 0.5 * 1 + 0.5 * 2/3
    assert class_ap(DETECTIONS, TRUTH, 1) == pytest.approx(0.5 + 1 / 3)


def test_eleven_point_ap_by_hand():
    # r = 0 .. 0.5 (six points) -> 1; r = 0.6 .. 1 (five points) -> 2/3
    assert class_ap(DETECTIONS, TRUTH, 1, method="11point") == pytest.approx((6 + 5 * 2 / 3) / 11)


def test_a_second_detection_of_a_found_box_is_wrong():
    twice = [Detection("a", 1, 0.9, (0, 0, 10, 10)), Detection("a", 1, 0.8, (0, 0, 10, 9))]
    # right, duplicate; recall 1/2 at precision 1 -> AP 0.5
    assert class_ap(twice, TRUTH, 1) == pytest.approx(0.5)


def test_difficult_boxes_are_neither_found_nor_missed():
    truth = {"a": _truth((0, 0, 10, 10), (30, 30, 50, 50), difficult=[False, True])}
    detections = [Detection("a", 1, 0.95, (30, 30, 50, 50)), Detection("a", 1, 0.9, (0, 0, 10, 10))]
    assert class_ap(detections, truth, 1) == 1.0


def test_perfect_and_empty_and_absent_classes():
    perfect = [Detection("a", 1, 0.9, (0, 0, 10, 10)), Detection("b", 1, 0.8, (20, 20, 40, 40))]
    assert class_ap(perfect, TRUTH, 1) == 1.0 and class_ap(perfect, TRUTH, 1, method="11point") == 1.0
    assert class_ap([], TRUTH, 1) == 0.0
    assert math.isnan(class_ap(perfect, TRUTH, 2))
    mean, per_class = mean_ap(perfect, TRUTH, [1, 2])
    assert mean == 1.0 and math.isnan(per_class[2])


def test_average_precision_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="11point"):
        average_precision(np.array([1.0]), np.array([1.0]), method="voc12")
