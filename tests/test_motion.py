"""Flow and motion saliency on tiny synthetic clips with known motion.

A clip is a blurred random texture seen by a camera (still, panning, zooming or
rotating: cv2.warpAffine of the texture) with a second textured square pasted
on top that moves on its own. The square's mask is the expected foreground.
"""

import cv2
import numpy as np
import pandas as pd
import pytest

from motionmasks.motion import camera_motion_residual, motion_saliency, optical_flow

H, W = 96, 128
SQUARE = 24  # side of the moving square, px
SPEED = 3  # square's motion, px per frame, to the right


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    noise = rng.integers(0, 256, (h, w), dtype=np.uint8)
    smooth = cv2.GaussianBlur(noise, (0, 0), 1.5)
    return cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX)


def _clip(camera: str = "static", frames: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3) uint8 frames and (T, H, W) bool masks of the moving square."""
    rng = np.random.default_rng(seed)
    background = _texture(rng, H, W)
    square = _texture(rng, SQUARE, SQUARE)
    centre = (W / 2, H / 2)
    clip = np.empty((frames, H, W, 3), np.uint8)
    masks = np.zeros((frames, H, W), bool)
    for t in range(frames):
        angle = {"rotation": 2.0 * t}.get(camera, 0.0)  # degrees
        scale = {"zoom": 1.03**t}.get(camera, 1.0)
        warp = cv2.getRotationMatrix2D(centre, angle, scale)
        warp[1, 2] += {"pan": 3.0 * t}.get(camera, 0.0)  # camera tilts up: scene moves down 3 px per frame
        frame = cv2.warpAffine(background, warp, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        y0, x0 = 36, 36 + SPEED * t
        frame[y0 : y0 + SQUARE, x0 : x0 + SQUARE] = square
        masks[t, y0 : y0 + SQUARE, x0 : x0 + SQUARE] = True
        clip[t] = np.repeat(frame[:, :, None], 3, axis=2)
    return clip, masks


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


# --- optical_flow ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_optical_flow_recovers_a_translation(method):
    image = _texture(np.random.default_rng(1), 64, 80)
    shifted = np.roll(image, (-2, 3), axis=(0, 1))  # content moves 3 px right, 2 px up
    flow = optical_flow(image, shifted, method=method)
    assert flow.shape == (64, 80, 2) and flow.dtype == np.float32
    median = np.median(flow[16:48, 16:64].reshape(-1, 2), axis=0)
    np.testing.assert_allclose(median, [3.0, -2.0], atol=0.1)


def test_optical_flow_takes_rgb_like_grayscale():
    image = _texture(np.random.default_rng(2), 48, 64)
    shifted = np.roll(image, 2, axis=1)
    rgb = lambda g: np.repeat(g[:, :, None], 3, axis=2)  # noqa: E731
    np.testing.assert_array_equal(optical_flow(image, shifted), optical_flow(rgb(image), rgb(shifted)))


@pytest.mark.parametrize("shape", [(1, 1), (4, 4), (16, 16), (8, 100), (100, 8), (20, 400)])
@pytest.mark.parametrize("preset", ["ultrafast", "fast", "medium"])
def test_optical_flow_on_tiny_and_thin_frames_is_finite(shape, preset):
    # OpenCV's DIS segfaults on such sizes unless the frames are padded.
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    flow = optical_flow(a, np.roll(a, 1, axis=1), preset=preset)
    assert flow.shape == (*shape, 2) and np.isfinite(flow).all()


@pytest.mark.parametrize(
    "a, b, error",
    [
        (np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8), ValueError),
        (np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32), TypeError),
        (np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 4), np.uint8), ValueError),
    ],
)
def test_optical_flow_rejects_bad_frames(a, b, error):
    with pytest.raises(error):
        optical_flow(a, b)


def test_optical_flow_rejects_unknown_method_and_preset():
    a = np.zeros((32, 32), np.uint8)
    with pytest.raises(ValueError, match="unknown flow method"):
        optical_flow(a, a, method="raft")
    with pytest.raises(ValueError, match="unknown DIS preset"):
        optical_flow(a, a, preset="slow")


# --- camera_motion_residual -------------------------------------------------------


def _homography_flow(h: int, w: int, matrix: np.ndarray) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    points = np.stack([x, y, np.ones_like(x)], axis=-1) @ matrix.T
    return np.stack([points[..., 0] / points[..., 2] - x, points[..., 1] / points[..., 2] - y], axis=-1).astype(
        np.float32
    )


def _zoom_rotation() -> np.ndarray:
    return np.vstack([cv2.getRotationMatrix2D((64.0, 48.0), 3.0, 1.05), [0.0, 0.0, 1.0]])


def test_camera_residual_removes_zoom_and_rotation_and_keeps_the_object():
    flow = _homography_flow(H, W, _zoom_rotation())
    flow[40:60, 50:70] += (5.0, 0.0)  # the object's own motion
    residual, info = camera_motion_residual(flow)
    assert residual.shape == (H, W) and residual.dtype == np.float32
    outside = np.ones((H, W), bool)
    outside[38:62, 48:72] = False
    assert residual[outside].max() < 0.01
    np.testing.assert_allclose(residual[42:58, 52:68], 5.0, atol=0.01)
    assert info["ok"] and 0.9 < info["inliers"] < 0.97  # the object's samples are outliers
    np.testing.assert_allclose(info["matrix"] / info["matrix"][2, 2], _zoom_rotation(), atol=1e-4)


def test_translation_model_cannot_explain_a_zoom():
    # Why the default is a homography: the reference's pan-only model leaves
    # the whole zooming background as "foreground".
    flow = _homography_flow(H, W, _zoom_rotation())
    residual, info = camera_motion_residual(flow, model="translation")
    assert np.median(residual) > 1.0 and not info["ok"]


def test_static_model_residual_is_the_flow_magnitude():
    # Static and moving cameras share one scale: residual px, as for a static camera.
    flow = np.zeros((H, W, 2), np.float32)
    flow[40:60, 50:70] = (3.0, 4.0)
    static, static_info = camera_motion_residual(flow, model="static")
    fitted, fitted_info = camera_motion_residual(flow, model="homography")
    np.testing.assert_allclose(static, np.hypot(flow[..., 0], flow[..., 1]), atol=1e-6)
    np.testing.assert_allclose(fitted, static, atol=1e-4)
    assert static_info["ok"] and fitted_info["ok"]


def test_camera_residual_flags_motion_no_camera_explains():
    flow = np.zeros((H, W, 2), np.float32)  # three bands, three unrelated motions
    flow[:, : W // 3] = (6.0, 0.0)
    flow[:, W // 3 : 2 * W // 3] = (0.0, -6.0)
    flow[:, 2 * W // 3 :] = (-6.0, 6.0)
    residual, info = camera_motion_residual(flow)
    assert not info["ok"] and info["inliers"] < 0.5
    assert np.isfinite(residual).all() and (residual >= 0).all()


def test_camera_residual_ignores_non_finite_flow():
    flow = np.zeros((32, 32, 2), np.float32)
    flow[3, 4] = np.nan
    flow[5, 6] = np.inf
    residual, info = camera_motion_residual(flow)
    assert np.isfinite(residual).all() and info["ok"]


def test_camera_residual_on_a_single_pixel_is_not_ok():
    residual, info = camera_motion_residual(np.ones((1, 1, 2), np.float32))
    assert residual.shape == (1, 1) and not info["ok"] and info["matrix"] is None


# --- motion_saliency ----------------------------------------------------------------


@pytest.mark.parametrize("camera", ["static", "pan", "zoom", "rotation"])
def test_saliency_finds_the_moving_square(camera):
    clip, masks = _clip(camera)
    saliency, diagnostics = motion_saliency(clip)
    assert saliency.shape == (6, H, W) and saliency.dtype == np.float32
    assert saliency.min() >= 0.0 and saliency.max() <= 1.0
    assert diagnostics["reliable"].all() and diagnostics["camera_ok"].all()
    for t in range(6):
        assert _iou(saliency[t] > 0.5, masks[t]) > 0.75, f"frame {t}"
        inside = saliency[t][masks[t]].mean()
        outside = saliency[t][~cv2.dilate(masks[t].astype(np.uint8), np.ones((9, 9))).astype(bool)]
        assert inside > 0.6 and np.percentile(outside, 99) < 0.1, f"frame {t}"


def test_saliency_scale_is_the_same_for_a_still_and_a_moving_camera():
    # The shot's scale is the square's speed relative to the scene, in px per
    # frame, whatever the camera does (the reference mixed px² and rad²).
    relative_speed = {"static": SPEED, "pan": np.hypot(SPEED, 3.0), "zoom": SPEED}  # zoom: square near the centre
    for camera, speed in relative_speed.items():
        scale = motion_saliency(_clip(camera)[0])[1]["scale_px"].iloc[0]
        assert scale == pytest.approx(speed, rel=0.15), camera


def test_saliency_is_normalised_over_the_shot_not_per_frame():
    clip, _ = _clip("static", frames=8)
    clip[5:] = clip[4]  # the square stops after frame 4: frames 6, 7 see no motion
    saliency, diagnostics = motion_saliency(clip)
    assert saliency[1].max() == 1.0
    assert saliency[6].max() < 0.05 and saliency[7].max() < 0.05  # not stretched to 1
    assert diagnostics["reliable"].all()


def test_saliency_zeroes_the_border_band():
    clip, _ = _clip("pan")
    saliency, _ = motion_saliency(clip, border=0.125)
    band = 12  # 0.125 * min(96, 128)
    assert not saliency[:, :band].any() and not saliency[:, -band:].any()
    assert not saliency[:, :, :band].any() and not saliency[:, :, -band:].any()
    assert saliency[:, band:-band, band:-band].any()


def test_saliency_computes_flow_small_and_returns_the_input_size():
    clip, masks = _clip("static")
    big = np.stack([cv2.resize(frame, (2 * W, 2 * H), interpolation=cv2.INTER_LINEAR) for frame in clip])
    big_masks = np.stack(
        [cv2.resize(m.astype(np.uint8), (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST) > 0 for m in masks]
    )
    saliency, diagnostics = motion_saliency(big, flow_max_side=W)
    assert saliency.shape == (6, 2 * H, 2 * W)
    assert _iou(saliency[2] > 0.5, big_masks[2]) > 0.6
    assert 2.4 < diagnostics["scale_px"].iloc[0] < 3.6  # px per frame at the flow size


def test_saliency_drops_pairs_the_camera_cannot_explain():
    clip, _ = _clip("static", frames=4)
    # Frame 3: three bands of frame 2 slide three different ways (no camera does that).
    moved = clip[2].copy()
    third = W // 3
    moved[:, :third] = np.roll(clip[2][:, :third], 6, axis=1)
    moved[:, third : 2 * third] = np.roll(clip[2][:, third : 2 * third], -6, axis=0)
    moved[:, 2 * third :] = np.roll(clip[2][:, 2 * third :], (6, -6), axis=(0, 1))
    clip[3] = moved
    saliency, diagnostics = motion_saliency(clip)
    frame2, frame3 = diagnostics.iloc[2], diagnostics.iloc[3]
    assert frame2["pairs"] == 2 and frame2["pairs_used"] == 1 and not frame2["camera_ok"] and frame2["reliable"]
    assert frame3["pairs_used"] == 0 and not frame3["reliable"]
    assert not saliency[3].any()  # an unreliable frame says nothing
    assert saliency[2].max() > 0.5  # frame 2 still sees the square through frame 1


def test_one_frame_shot_is_zero_and_unreliable():
    clip, _ = _clip("static", frames=1)
    saliency, diagnostics = motion_saliency(clip)
    assert saliency.shape == (1, H, W) and not saliency.any()
    assert diagnostics.to_dict("records")[0] == {
        "frame": 0,
        "pairs": 0,
        "pairs_used": 0,
        "camera_ok": False,
        "inliers": 0.0,
        "camera_px": 0.0,
        "reliable": False,
        "residual_px": 0.0,
        "scale_px": 1.0,
    }


def test_empty_shot_gives_empty_outputs():
    saliency, diagnostics = motion_saliency(np.zeros((0, H, W, 3), np.uint8))
    assert saliency.shape == (0, H, W) and len(diagnostics) == 0
    assert list(diagnostics.columns) == [
        "frame",
        "pairs",
        "pairs_used",
        "camera_ok",
        "inliers",
        "camera_px",
        "reliable",
        "residual_px",
        "scale_px",
    ]


@pytest.mark.parametrize("kind", ["identical", "black"])
def test_still_shot_is_all_zero_and_reliable(kind):
    clip = np.zeros((5, H, W, 3), np.uint8) if kind == "black" else np.repeat(_clip("static", frames=1)[0], 5, axis=0)
    saliency, diagnostics = motion_saliency(clip)
    assert not saliency.any() and np.isfinite(saliency).all()
    assert diagnostics["reliable"].all()
    assert (diagnostics["scale_px"] == 1.0).all()  # min_scale: nothing was stretched


def test_tiny_16x16_video_is_finite_and_in_range():
    rng = np.random.default_rng(4)
    base = _texture(rng, 40, 40)
    clip = np.stack([np.repeat(base[t : t + 16, 10:26, None], 3, axis=2) for t in range(4)])
    saliency, diagnostics = motion_saliency(clip)
    assert saliency.shape == (4, 16, 16)
    assert np.isfinite(saliency).all() and saliency.min() >= 0 and saliency.max() <= 1
    assert isinstance(diagnostics, pd.DataFrame) and len(diagnostics) == 4


def test_saliency_is_deterministic():
    clip, _ = _clip("zoom")
    first, first_diag = motion_saliency(clip)
    second, second_diag = motion_saliency(clip)
    np.testing.assert_array_equal(first, second)
    pd.testing.assert_frame_equal(first_diag, second_diag)


@pytest.mark.parametrize(
    "frames, options, error",
    [
        (np.zeros((3, 16, 16), np.uint8), {}, ValueError),
        (np.zeros((3, 16, 16, 3), np.float32), {}, TypeError),
        (np.zeros((3, 16, 16, 3), np.uint8), {"neighbours": 0}, ValueError),
        (np.zeros((3, 16, 16, 3), np.uint8), {"combine": "max"}, ValueError),
        (np.zeros((3, 16, 16, 3), np.uint8), {"border": 0.5}, ValueError),
        (np.zeros((3, 16, 16, 3), np.uint8), {"model": "spline"}, ValueError),
    ],
)
def test_saliency_rejects_bad_input(frames, options, error):
    with pytest.raises(error):
        motion_saliency(frames, **options)
