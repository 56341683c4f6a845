from pathlib import Path

import cv2
import numpy as np
import pytest

from motionmasks.evaluate import ScoreError, frame_scores, iou, overlay_gallery, score_folders, score_sequence

SHARED = Path(__file__).resolve().parents[2] / "shared"


def square(top, left, size=4, shape=(10, 10)):
    mask = np.zeros(shape, bool)
    mask[top : top + size, left : left + size] = True
    return mask


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


# ---------------------------------------------------------------- per-frame measure


def test_iou_of_two_4x4_squares_overlapping_2x2_is_4_over_28():
    assert iou(square(0, 0), square(2, 2)) == 4 / 28


def test_iou_is_one_when_both_masks_are_empty():
    empty = np.zeros((5, 5), bool)
    assert iou(empty, empty) == 1.0


def test_frame_scores_of_a_prediction_inside_the_ground_truth():
    pred = np.zeros((10, 10), bool)
    pred[0:2, 0:4] = True  # half of the 4x4 ground-truth square
    assert frame_scores(pred, square(0, 0)) == (0.5, 1.0, 0.5)


@pytest.mark.parametrize(
    "pred_empty, gt_empty, expected",
    [
        (True, True, (1.0, 1.0, 1.0)),  # nothing to find, nothing found
        (True, False, (0.0, 0.0, 0.0)),  # empty answer on a present object: precision 0
        (False, True, (0.0, 0.0, 1.0)),  # nothing to miss: recall 1
    ],
)
def test_frame_scores_conventions_for_empty_masks(pred_empty, gt_empty, expected):
    empty = np.zeros((10, 10), bool)
    pred = empty if pred_empty else square(0, 0)
    gt = empty if gt_empty else square(3, 3)
    assert frame_scores(pred, gt) == expected


def test_frame_scores_rejects_different_shapes():
    with pytest.raises(ScoreError, match=r"\(10, 10\).*\(10, 11\)"):
        frame_scores(np.zeros((10, 10), bool), np.zeros((10, 11), bool))


# ---------------------------------------------------------------- sequences


def test_score_sequence_means_over_frames():
    gt = square(0, 0)
    preds = [gt.astype(np.float32), np.zeros((10, 10), np.float32)]  # IoU 1, then 0 (precision 0, recall 0)
    assert score_sequence(preds, [gt, gt]) == {"J": 0.5, "precision": 0.5, "recall": 0.5, "frames": 2}


def test_threshold_is_inclusive():
    gt = np.array([[True, False]])
    at_threshold = np.array([[0.5, 0.4999]])
    assert score_sequence([at_threshold], [gt], threshold=0.5)["J"] == 1.0


@pytest.mark.parametrize(
    "value, threshold, expected_j", [(102, 0.4, 1.0), (101, 0.4, 0.0), (179, 0.7, 1.0), (178, 0.7, 0.0)]
)
def test_uint8_predictions_are_divided_by_255(value, threshold, expected_j):
    pred = np.array([[value]], np.uint8)
    gt = np.array([[255]], np.uint8)  # 0/255 ground truth: nonzero is foreground
    assert score_sequence([pred], [gt], threshold=threshold)["J"] == expected_j


def test_score_sequence_rejects_unequal_lengths():
    gt = square(0, 0)
    with pytest.raises(ScoreError, match="ground truth have more frames.*position 1"):
        score_sequence([gt], [gt, gt])


def test_score_sequence_rejects_float_maps_outside_unit_range():
    with pytest.raises(ScoreError, match="divide 0-255 maps by 255"):
        score_sequence([np.full((2, 2), 255.0)], [np.ones((2, 2), bool)])


def test_score_sequence_rejects_an_empty_sequence():
    with pytest.raises(ScoreError, match="no frames"):
        score_sequence([], [])


# ---------------------------------------------------------------- DAVIS folders


@pytest.fixture
def davis(tmp_path):
    """Two sequences; soft 8-bit predictions where 150 (0.59) is foreground at 0.5 but not at 0.7."""
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    a_gt = square(0, 0).astype(np.uint8) * 255
    write_png(gt_dir / "a" / "00000.png", a_gt)
    write_png(pred_dir / "a" / "00000.png", square(0, 0).astype(np.uint8) * 200)  # IoU 1
    write_png(gt_dir / "a" / "00001.png", a_gt)
    write_png(pred_dir / "a" / "00001.png", square(2, 2).astype(np.uint8) * 200)  # IoU 4/28
    write_png(gt_dir / "b" / "00000.png", a_gt)
    half = np.zeros((10, 10), np.uint8)
    half[0:2, 0:4] = 200
    half[2:4, 0:4] = 150
    write_png(pred_dir / "b" / "00000.png", half)  # IoU 1 at 0.5, 0.5 at 0.7
    write_png(gt_dir / "c" / "00000.png", a_gt)  # a ground-truth sequence with no prediction is not scored
    return pred_dir, gt_dir


def test_score_folders_gives_exact_per_sequence_and_mean_j(davis):
    result = score_folders(*davis)
    assert set(result["sequences"]) == {"a", "b"}
    assert result["sequences"]["a"]["J"] == pytest.approx((1 + 4 / 28) / 2)
    assert result["sequences"]["a"]["frames"] == 2
    assert result["sequences"]["b"]["J"] == 1.0
    assert result["mean_J"] == pytest.approx(((1 + 4 / 28) / 2 + 1) / 2)
    assert result["threshold"] == 0.5


def test_score_folders_applies_the_threshold(davis):
    result = score_folders(*davis, threshold=0.7)
    assert result["sequences"]["b"] == {"J": 0.5, "precision": 1.0, "recall": 0.5, "frames": 1}
    assert result["mean_recall"] == pytest.approx(((1 + 4 / 16) / 2 + 0.5) / 2)


def test_score_folders_ignores_temporary_files_of_atomic_writers(davis):
    pred_dir, gt_dir = davis
    write_png(pred_dir / "a" / ".00002.abc.tmp.png", np.zeros((10, 10), np.uint8))
    (pred_dir / ".a.xyz.tmp").mkdir()
    assert score_folders(pred_dir, gt_dir)["sequences"]["a"]["frames"] == 2


def test_missing_prediction_frame_is_named(davis):
    pred_dir, gt_dir = davis
    (pred_dir / "a" / "00001.png").unlink()
    with pytest.raises(ScoreError, match=r"a: 1 ground-truth frame\(s\) have no prediction: 00001\.png"):
        score_folders(pred_dir, gt_dir)


def test_extra_prediction_frame_is_named(davis):
    pred_dir, gt_dir = davis
    write_png(pred_dir / "b" / "00007.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(ScoreError, match=r"b: 1 prediction\(s\) have no ground truth: 00007\.png"):
        score_folders(pred_dir, gt_dir)


def test_long_lists_of_missing_frames_are_cut_after_ten(davis):
    pred_dir, gt_dir = davis
    for i in range(2, 14):
        write_png(gt_dir / "a" / f"{i:05d}.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(ScoreError) as err:
        score_folders(pred_dir, gt_dir)
    message = str(err.value)
    assert "a: 12 ground-truth frame(s) have no prediction: 00002.png, " in message
    assert "00011.png and 2 more" in message
    assert "00012.png" not in message


def test_size_mismatch_is_named(davis):
    pred_dir, gt_dir = davis
    write_png(pred_dir / "a" / "00001.png", np.zeros((5, 10), np.uint8))
    with pytest.raises(ScoreError, match=r"a: 1 frame\(s\) differ in size.*00001\.png \(10x5 vs 10x10\)"):
        score_folders(pred_dir, gt_dir)


def test_unknown_sequence_is_named(davis):
    pred_dir, gt_dir = davis
    write_png(pred_dir / "zebra" / "00000.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(ScoreError, match="no ground-truth folder .*: zebra;"):
        score_folders(pred_dir, gt_dir)


def test_davis_ground_truth_scored_against_itself_gives_j_one(tmp_path):
    gt_dir = SHARED / "data" / "davis2016-dev" / "Annotations" / "480p"
    if not (gt_dir / "blackswan").is_dir():
        pytest.skip(f"{gt_dir} is not here (../shared is only beside the project checkout)")
    (tmp_path / "blackswan").symlink_to(gt_dir / "blackswan", target_is_directory=True)
    result = score_folders(tmp_path, gt_dir)
    assert result["mean_J"] == 1.0
    assert result["sequences"]["blackswan"]["frames"] == 50


# ---------------------------------------------------------------- gallery


def test_overlay_gallery_writes_one_png_of_the_expected_size(tmp_path):
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (48, 96, 3), dtype=np.uint8)  # 2:1 -> rows 40 px high at tile width 80
    tall = rng.integers(0, 256, (60, 30, 3), dtype=np.uint8)  # 1:2 -> 160 px
    rows = [
        ("blackswan 00000 J=0.81", wide, rng.random((12, 24)), np.ones((48, 96), bool)),  # map at lower resolution
        ("no ground truth", tall, rng.random((60, 30)), None),
    ]
    out = tmp_path / "gallery.png"
    overlay_gallery(rows, out, tile_width=80)
    image = cv2.imread(str(out))
    assert image.shape == (40 + 160, 3 * 80, 3)
    assert (image[40:, 160:] == 128).all()  # the missing ground truth is a grey tile
    assert [p.name for p in tmp_path.iterdir()] == ["gallery.png"]  # no temporary left behind


def test_overlay_gallery_puts_a_second_map_before_the_ground_truth(tmp_path):
    frame = np.full((20, 40, 3), 200, np.uint8)
    student = np.zeros((10, 20))
    rows = [
        ("with the ConvNet", frame, np.ones((20, 40)), np.ones((20, 40), bool), student),
        ("without", frame, np.ones((20, 40)), None, None),
    ]
    out = tmp_path / "gallery.png"
    overlay_gallery(rows, out, tile_width=40)
    image = cv2.imread(str(out))
    assert image.shape == (2 * 20, 4 * 40, 3)
    zero_heat = cv2.applyColorMap(np.zeros((1, 1), np.uint8), cv2.COLORMAP_TURBO)[0, 0]
    expected = np.round(0.4 * 200 + 0.6 * zero_heat.astype(float))  # map 0 blended over the frame
    assert np.abs(image[:20, 80:120].reshape(-1, 3) - expected).max() <= 1
    assert (image[20:, 80:] == 128).all()  # no second map and no ground truth: grey tiles


def test_overlay_gallery_names_the_bad_row(tmp_path):
    rows = [
        ("ok", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4)), None),
        ("grey frame", np.zeros((4, 4), np.uint8), np.zeros((4, 4)), None),
    ]
    with pytest.raises(ValueError, match=r"row 1 \('grey frame'\): frame must be uint8 \(H, W, 3\)"):
        overlay_gallery(rows, tmp_path / "g.png")
