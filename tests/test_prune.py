"""Pruning rules and sampling on tiny synthetic masks with exact expectations."""

import numpy as np
import pytest

from motionmasks.prune import RULES, border_band, prune_frames, rule_failures, sample_evenly


def _mask(h=20, w=20, box=None):
    mask = np.zeros((h, w), np.uint8)
    if box:
        y0, y1, x0, x1 = box
        mask[y0:y1, x0:x1] = 255
    return mask


def test_border_band_is_five_percent_of_each_side():
    band = border_band(40, 20, 0.05)
    assert band[:2].all() and band[-2:].all() and band[:, :1].all() and band[:, -1:].all()
    assert not band[2:-2, 1:-1].any()
    assert band.sum() == 40 * 20 - 36 * 18


def test_each_rule_on_its_own_frame():
    masks = np.stack(
        [
            _mask(box=(6, 14, 6, 14)),  # 16% in the middle: passes
            _mask(box=(9, 11, 9, 11)),  # 1%: too little
            _mask(box=(0, 20, 0, 18)),  # 90%: too much
            _mask(box=(0, 10, 0, 10)),  # 25% in a corner: touches the border
            _mask(box=(6, 14, 6, 14)),  # passes, but unreliable
        ]
    )
    reliable = np.array([True, True, True, True, False])
    failed = rule_failures(masks, reliable)
    assert set(failed) == set(RULES)
    assert failed["unreliable"].tolist() == [False, False, False, False, True]
    assert failed["too_little_foreground"].tolist() == [False, True, False, False, False]
    assert failed["too_much_foreground"].tolist() == [False, False, True, False, False]
    assert failed["border"].tolist() == [False, False, True, True, False]
    assert not rule_failures(masks, reliable, drop_unreliable=False)["unreliable"].any()


def test_soft_threshold_counts_half_as_foreground():
    mask = np.full((1, 10, 10), 127, np.uint8)
    assert rule_failures(mask, [True], threshold=0.5, min_foreground=0.5, max_foreground=1.0, border_width=0)[
        "too_little_foreground"
    ].tolist() == [True]
    mask[:] = 128
    assert not rule_failures(mask, [True], min_foreground=0.5, max_foreground=1.0, border_width=0)[
        "too_little_foreground"
    ].any()


def test_sample_evenly_keeps_ends_and_spreads():
    assert sample_evenly(np.arange(3), 10).tolist() == [0, 1, 2]
    assert sample_evenly(np.arange(10), 4).tolist() == [0, 3, 6, 9]
    assert sample_evenly(np.array([2, 5, 7, 11, 13]), 2).tolist() == [2, 13]


def test_prune_frames_counts_frames_shots_and_the_rule_that_emptied_them():
    good, tiny, corner = _mask(box=(6, 14, 6, 14)), _mask(box=(9, 11, 9, 11)), _mask(box=(0, 10, 0, 10))
    # shot 0: 4 good frames; shot 1: one unreliable good frame and one tiny; shot 2: two in the corner
    masks = np.stack([good] * 4 + [good, tiny] + [corner] * 2)
    reliable = np.array([True] * 4 + [False, True] + [True, True])
    shots = np.array([0] * 4 + [1, 1] + [2, 2])
    outcome = prune_frames(masks, reliable, shots, frames_per_shot=2)
    assert outcome.frames == 8 and outcome.shots == 3 and outcome.kept_frames == 4
    assert outcome.removed_frames == {
        "unreliable": 1,
        "too_little_foreground": 1,
        "too_much_foreground": 0,
        "border": 2,
    }
    assert outcome.removed_shots == {"unreliable": 0, "too_little_foreground": 1, "too_much_foreground": 0, "border": 1}
    assert outcome.sampled.tolist() == [0, 3]
    assert outcome.removed_by == ""


def test_a_video_emptied_names_the_rule():
    tiny = _mask(box=(9, 11, 9, 11))
    outcome = prune_frames(np.stack([tiny] * 3), np.ones(3, bool), np.zeros(3), frames_per_shot=5)
    assert outcome.removed_by == "too_little_foreground"
    assert outcome.sampled.size == 0


def test_prune_params_refuse_an_empty_range():
    from motionmasks.params import ParamsError, parse_params

    with pytest.raises(ParamsError, match="min_foreground"):
        parse_params({"prune": {"min_foreground": 0.9, "max_foreground": 0.5}})


def test_degradations_for_the_robustness_experiment():
    from motionmasks.prune import degrade_mask

    mask = _mask(box=(5, 15, 4, 14))  # 10 x 10
    assert degrade_mask(mask, "none", 0) is mask
    assert (degrade_mask(mask, "erode", 3) > 0).sum() == 8 * 8
    assert (degrade_mask(mask, "dilate", 3) > 0).sum() == 12 * 12
    half = degrade_mask(mask, "truncate", 0.5, side="left")
    assert (half > 0).sum() == 50 and not half[:, 4:9].any() and half[5:15, 9:14].all()
    assert (degrade_mask(mask, "truncate", 0.3, side="bottom")[12:15] == 0).all()
    assert (degrade_mask(mask, "truncate", 0.3, side="bottom") > 0).sum() == 70
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade_mask(mask, "blur", 1)
