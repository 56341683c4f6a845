"""Optical flow and motion saliency of a shot (ALGORITHM.md section 2).

A pixel is salient when it moves differently from the camera. Per frame pair the
camera motion is a robust global fit of the optical flow (a homography by
default, so pans, zooms and rotations are all "camera"); the saliency of a frame
is the flow residual left after removing that fit, in pixels per frame,
combined over the frame's neighbours ``i±1 .. i±k`` (by default the minimum of
the motion towards the previous and the next frame). Static and moving cameras
thus share one scale, unlike the reference (px² for a static camera, rad² for a
pan), and the whole shot is divided by one robust scale.

Pairs whose flow the camera model cannot explain (too few RANSAC inliers) are
dropped; a frame left with no usable pair gets a zero map and ``reliable=False``
in the diagnostics, so pruning can discard it. This replaces the reference's
appearance fallback, which produced no foreground.

Everything here is label-free: classical flow (DIS or Farneback), RANSAC fits.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pandas as pd

from motionmasks.video import fit_max_side

FLOW_METHODS = ("dis", "farneback")
DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
CAMERA_MODELS = ("homography", "affine", "translation", "static")
PAIR_COMBINES = {"min": np.min, "median": np.median, "mean": np.mean}

# OpenCV's DIS crashes (segfault, not an exception) on images whose shorter side
# is under ~32 px when the longer side is a few times larger (measured on
# OpenCV 5.0 for all three presets); smaller images are padded to this size.
_DIS_MIN_SIDE = 32

_DIAGNOSTIC_COLUMNS = {
    "frame": "int64",
    "pairs": "int64",
    "pairs_used": "int64",
    "camera_ok": "bool",
    "inliers": "float64",
    "camera_px": "float64",
    "reliable": "bool",
    "residual_px": "float64",
    "scale_px": "float64",
}

_local = threading.local()  # one DIS object per thread and preset: they hold buffers


def _dis(preset: str) -> cv2.DISOpticalFlow:
    cache = getattr(_local, "dis", None)
    if cache is None:
        cache = _local.dis = {}
    if preset not in cache:
        dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
        # The presets stop one or two pyramid levels above the input (flow at
        # 1/2 or 1/4 size). We shrink the frames ourselves instead: flow at the
        # full (small) input size is better for the same cost (DAVIS, see
        # benchmarks/motion.py) and the caller's size means what it says.
        dis.setFinestScale(0)
        cache[preset] = dis
    return cache[preset]


def _gray_u8(frame: np.ndarray, name: str) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise TypeError(
            f"{name}: expected uint8 pixels (0-255), got {frame.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8)"
        )
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if frame.ndim == 2:
        return frame
    raise ValueError(f"{name}: expected a grayscale (H, W) or RGB (H, W, 3) image, got shape {frame.shape}")


def optical_flow(
    frame_a: np.ndarray,
    frame_b: np.ndarray,
    *,
    method: str = "dis",
    preset: str = "medium",
) -> np.ndarray:
    """Dense optical flow from ``frame_a`` to ``frame_b``.

    Parameters
    ----------
    frame_a, frame_b : ndarray, (H, W) or (H, W, 3) uint8
        Grayscale or RGB frames of the same size.
    method : {"dis", "farneback"}
        OpenCV's DIS flow (Kroeger et al. ECCV 2016, fast) or Farneback's
        polynomial-expansion flow (slower than DIS "ultrafast" and, measured
        on DAVIS, a worse basis for saliency).
    preset : {"ultrafast", "fast", "medium"}
        DIS preset: patch size, patch stride and iteration counts (ignored by
        Farneback). Unlike OpenCV's presets, which stop one or two pyramid
        levels above the input, the flow is always computed at the input size:
        shrink the frames to choose its resolution and cost.

    Returns
    -------
    flow : ndarray, (H, W, 2) float32
        Displacement in pixels, ``(dx, dy)``: the point ``(x, y)`` of
        ``frame_a`` is seen at ``(x + dx, y + dy)`` in ``frame_b``.

    Notes
    -----
    DIS needs images of at least 32 px per side (smaller ones crash OpenCV),
    so smaller frames are padded by reflection and the flow cropped back.
    """
    if method not in FLOW_METHODS:
        raise ValueError(f"unknown flow method {method!r}; use one of {FLOW_METHODS}")
    if method == "dis" and preset not in DIS_PRESETS:
        raise ValueError(f"unknown DIS preset {preset!r}; use one of {tuple(DIS_PRESETS)}")
    a = _gray_u8(frame_a, "frame_a")
    b = _gray_u8(frame_b, "frame_b")
    if a.shape != b.shape:
        raise ValueError(
            f"frame_a is {a.shape[1]}x{a.shape[0]} but frame_b is {b.shape[1]}x{b.shape[0]}; resize them to one size"
        )
    h, w = a.shape
    if method == "farneback":
        # OpenCV's sample values: 3 pyramid levels halving the size, 15 px
        # averaging window, 3 iterations, 5 px polynomial support (sigma 1.2).
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return flow.astype(np.float32, copy=False)
    pad_y, pad_x = max(0, _DIS_MIN_SIDE - h), max(0, _DIS_MIN_SIDE - w)
    if pad_y or pad_x:
        border = cv2.BORDER_REFLECT_101 if h > 1 and w > 1 else cv2.BORDER_REPLICATE
        a = cv2.copyMakeBorder(a, 0, pad_y, 0, pad_x, border)
        b = cv2.copyMakeBorder(b, 0, pad_y, 0, pad_x, border)
    flow = _dis(preset).calc(a, b, None)
    return np.ascontiguousarray(flow[:h, :w], dtype=np.float32)


def _grid_samples(h: int, w: int, grid_step: int) -> tuple[np.ndarray, np.ndarray]:
    # At least ~8 samples per side so a 4-point homography stays over-determined.
    step = max(1, min(grid_step, min(h, w) // 8))
    ys = np.arange(step // 2, h, step)
    xs = np.arange(step // 2, w, step)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return yy.ravel(), xx.ravel()


def _camera_flow(matrix: np.ndarray, h: int, w: int) -> np.ndarray:
    """Flow (H, W, 2) float32 that the 3x3 camera ``matrix`` induces on each pixel."""
    x = np.arange(w, dtype=np.float32)[None, :]
    y = np.arange(h, dtype=np.float32)[:, None]
    m = matrix.astype(np.float32)
    camera = np.empty((h, w, 2), np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        den = m[2, 0] * x + m[2, 1] * y + m[2, 2]
        camera[..., 0] = (m[0, 0] * x + m[0, 1] * y + m[0, 2]) / den - x
        camera[..., 1] = (m[1, 0] * x + m[1, 1] * y + m[1, 2]) / den - y
    return camera


def camera_motion_residual(
    flow: np.ndarray,
    *,
    model: str = "homography",
    ransac_threshold: float = 1.0,
    min_inlier_fraction: float = 0.5,
    grid_step: int = 8,
) -> tuple[np.ndarray, dict]:
    """Remove the camera's motion from ``flow`` and return what is left.

    The camera motion is fitted robustly (RANSAC) to the flow sampled on a
    regular grid; the residual is the per-pixel distance between the flow and
    the fitted motion.

    Parameters
    ----------
    flow : ndarray, (H, W, 2) float
        Optical flow in pixels (see :func:`optical_flow`).
    model : {"homography", "affine", "translation", "static"}
        Camera motion model: a homography (pan, tilt, zoom, rotation of a
        camera viewing a far or planar scene), a 6-dof affine map, a pure
        translation (the median flow), or no camera motion at all.
    ransac_threshold : float
        Distance in pixels (of ``flow``'s resolution) under which a sample
        agrees with the model.
    min_inlier_fraction : float in [0, 1]
        The fit is ``ok`` only when at least this fraction of the samples
        agree with it.
    grid_step : int
        Spacing of the samples in pixels (reduced on small flows so that at
        least about 8 x 8 samples are used).

    Returns
    -------
    residual : ndarray, (H, W) float32
        ``|flow - camera_flow|`` in pixels, finite and >= 0. When the fit is
        not ``ok`` it is still the residual of the best fit found (or the flow
        magnitude when no fit exists); callers should not trust it.
    info : dict
        ``ok`` (bool), ``inliers`` (fraction of samples within
        ``ransac_threshold``), ``camera_px`` (median magnitude of the fitted
        camera motion, px), ``samples`` (int), ``matrix`` (3x3 float64 camera
        map from frame a to frame b, or None).
    """
    if model not in CAMERA_MODELS:
        raise ValueError(f"unknown camera model {model!r}; use one of {CAMERA_MODELS}")
    if not 0.0 <= min_inlier_fraction <= 1.0:
        raise ValueError(f"min_inlier_fraction must be in [0, 1], got {min_inlier_fraction}")
    if ransac_threshold <= 0:
        raise ValueError(f"ransac_threshold must be > 0 px, got {ransac_threshold}")
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[0] < 1 or flow.shape[1] < 1:
        raise ValueError(f"flow must have shape (H, W, 2) with H, W >= 1, got {flow.shape}")
    h, w = flow.shape[:2]
    if not np.isfinite(flow).all():  # a flow failure must not spread NaN into the saliency
        flow = np.nan_to_num(flow, nan=0.0, posinf=0.0, neginf=0.0)

    yy, xx = _grid_samples(h, w, grid_step)
    src = np.stack([xx, yy], axis=1).astype(np.float32)  # (N, 2) x, y
    dst = src + flow[yy, xx]
    matrix = None
    if model == "static":
        matrix = np.eye(3)
    elif model == "translation":
        shift = np.median(flow[yy, xx], axis=0)
        matrix = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]], [0.0, 0.0, 1.0]])
    elif model == "affine" and len(src) >= 3:
        fit, _ = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=ransac_threshold)
        if fit is not None:
            matrix = np.vstack([fit, [0.0, 0.0, 1.0]])
    elif model == "homography" and len(src) >= 4:
        fit, _ = cv2.findHomography(src, dst, cv2.RANSAC, ransac_threshold)
        if fit is not None:
            matrix = fit

    camera = _camera_flow(matrix, h, w) if matrix is not None else None
    if camera is None or not np.isfinite(camera).all():  # no fit, or a degenerate one
        matrix, camera = None, np.zeros((h, w, 2), np.float32)
    left = flow - camera
    residual = cv2.magnitude(left[..., 0], left[..., 1])
    inliers = float(np.mean(residual[yy, xx] <= ransac_threshold))
    info = {
        "ok": bool(matrix is not None and inliers >= min_inlier_fraction),
        "inliers": inliers,
        "camera_px": float(np.median(cv2.magnitude(camera[::2, ::2, 0], camera[::2, ::2, 1]))),
        "samples": int(len(yy)),
        "matrix": matrix,
    }
    return residual, info


def _shrink(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased shrink to ``size`` (width, height): Gaussian pyramid halvings
    while at least twice too big, then area averaging (a direct INTER_AREA at a
    non-integer ratio costs ~5x more at 854x480 -> 224 px)."""
    while gray.shape[1] >= 2 * size[0] and gray.shape[0] >= 2 * size[1]:
        gray = cv2.pyrDown(gray)
    if (gray.shape[1], gray.shape[0]) == size:
        return gray
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def _band(h: int, w: int, border: float) -> int:
    return min(int(round(border * min(h, w))), (min(h, w) + 1) // 2)


def _zero_border(maps: np.ndarray, border: float) -> None:
    """Zero a band of ``border * min(H, W)`` pixels along the edges of (..., H, W) maps."""
    h, w = maps.shape[-2:]
    band = _band(h, w, border)
    if band <= 0:
        return
    maps[..., :band, :] = 0
    maps[..., -band:, :] = 0
    maps[..., :, :band] = 0
    maps[..., :, -band:] = 0


def motion_saliency(
    frames: np.ndarray,
    *,
    neighbours: int = 1,
    method: str = "dis",
    preset: str = "ultrafast",
    flow_max_side: int = 224,
    model: str = "homography",
    ransac_threshold: float = 1.0,
    min_inlier_fraction: float = 0.5,
    combine: str = "min",
    border: float = 0.125,
    box: int = 5,
    percentile: float = 95.0,
    min_scale: float = 1.0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Motion saliency of every frame of a shot, in [0, 1].

    Steps: shrink the frames to ``flow_max_side``; for each frame ``i``
    compute the flow to ``i±1 .. i±neighbours`` (those inside the shot);
    remove each pair's camera motion (:func:`camera_motion_residual`) and
    divide by the pair's frame distance (px per frame); drop the pairs the
    camera model does not explain; combine the rest; box filter; zero a border
    band; divide the whole shot by one robust scale; upsample to the input
    size.

    Parameters
    ----------
    frames : ndarray, (T, H, W, 3) uint8
        RGB frames of one shot, in order, at the working resolution.
    neighbours : int
        ``k``: frame ``i`` is compared with ``i-k .. i+k``. *ref* 3; 1 is
        measured better on DAVIS with ``combine="min"`` and costs a third.
    method, preset : str
        Flow method and DIS preset (see :func:`optical_flow`). Each ordered
        pair is computed once: ``i -> j`` serves frame ``i`` only (the flow
        ``j -> i`` lives on frame ``j``'s pixels and is computed for ``j``).
        "ultrafast" at 224 px is the measured speed/quality balance; "medium"
        is about 5 % better on DAVIS for about 3x the flow time
        (benchmarks/motion.py).
    flow_max_side : int
        Longer side, in pixels, of the frames the flow is computed on (never
        enlarged: feed frames at least this big). ``ransac_threshold``,
        ``box`` and ``min_scale`` are in pixels of this resolution.
    model, ransac_threshold, min_inlier_fraction : see :func:`camera_motion_residual`.
    combine : {"min", "median", "mean"}
        How a frame's usable pairs are combined. "min" keeps only motion seen
        both towards the past and the future, which removes the halo that
        flow leaves where the object uncovers or covers the background.
    border : float
        Width of the band zeroed along the frame edges, as a fraction of
        ``min(H, W)`` (*ref* 0.125).
    box : int
        Side of the box filter applied to each frame's residual, in flow
        pixels (*ref* 5); 0 or 1 disables it.
    percentile : float
        The shot is divided by this percentile of its saliency (reliable
        frames, inside the border band), then clipped to [0, 1]. The
        reference divides by the maximum, which one flow outlier can set.
    min_scale : float
        Floor of that divisor, in px per frame, so a shot where nothing moves
        keeps its small residuals small instead of being stretched to 1.

    Returns
    -------
    saliency : ndarray, (T, H, W) float32
        Motion saliency in [0, 1] at the input size; zero on the border band
        and on unreliable frames.
    diagnostics : pandas.DataFrame
        One row per frame, columns: ``frame`` (position in the shot),
        ``pairs`` (pairs tried), ``pairs_used`` (pairs whose camera model was
        ok), ``camera_ok`` (every tried pair was explained), ``inliers`` (mean
        inlier fraction over the tried pairs), ``camera_px`` (median over the
        used pairs of the camera's median motion, px per frame),
        ``reliable`` (at least one usable pair), ``residual_px`` (the frame's
        ``percentile`` residual before normalisation, px per frame),
        ``scale_px`` (the shot's divisor, same on every row).

    Raises
    ------
    ValueError, TypeError
        For frames that are not (T, H, W, 3) uint8, or out-of-range options.

    Notes
    -----
    Unexplained camera motion: a pair whose camera fit has fewer than
    ``min_inlier_fraction`` inliers (strong parallax, an object covering most
    of the frame, a cut, a flow failure) is dropped, because its residual
    would mark the background as foreground. A frame left with no usable pair
    gets a zero map and ``reliable=False``, and is left out of the shot's
    scale; pruning should discard it. A one-frame shot has no pair, so its
    frame is unreliable. A shot where nothing moves is explained by the camera
    model: it is reliable with all-zero (or near-zero) maps, and pruning
    rejects it for having no foreground.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> clip = rng.integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    >>> saliency, diagnostics = motion_saliency(clip)
    >>> saliency.shape, saliency.dtype
    ((4, 48, 64), dtype('float32'))
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3) (RGB), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise TypeError(
            f"frames must be uint8 RGB, got {frames.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8)"
        )
    if neighbours < 1:
        raise ValueError(f"neighbours must be >= 1, got {neighbours}")
    if flow_max_side < 1:
        raise ValueError(f"flow_max_side must be >= 1 px, got {flow_max_side}")
    if combine not in PAIR_COMBINES:
        raise ValueError(f"unknown combine {combine!r}; use one of {tuple(PAIR_COMBINES)}")
    if not 0.0 <= border < 0.5:
        raise ValueError(f"border must be a fraction of min(H, W) in [0, 0.5), got {border}")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    if min_scale <= 0:
        raise ValueError(f"min_scale must be > 0 px per frame, got {min_scale}")
    t, h, w = frames.shape[:3]
    if t == 0:
        empty = {name: pd.Series(dtype=dtype) for name, dtype in _DIAGNOSTIC_COLUMNS.items()}
        return np.zeros((0, h, w), np.float32), pd.DataFrame(empty)

    # Shrink once per frame; every pair reuses the small grayscale frames.
    fw, fh = fit_max_side(w, h, flow_max_side)
    small = np.empty((t, fh, fw), np.uint8)
    for i in range(t):
        small[i] = _shrink(cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY), (fw, fh))

    raw = np.zeros((t, fh, fw), np.float32)  # residual, px per frame, at flow resolution
    rows = []
    for i in range(t):
        partners = [j for d in range(1, neighbours + 1) for j in (i - d, i + d) if 0 <= j < t]
        used, inliers, camera = [], [], []
        for j in partners:
            residual, info = camera_motion_residual(
                optical_flow(small[i], small[j], method=method, preset=preset),
                model=model,
                ransac_threshold=ransac_threshold,
                min_inlier_fraction=min_inlier_fraction,
            )
            inliers.append(info["inliers"])
            if info["ok"]:
                used.append(residual / abs(i - j))
                camera.append(info["camera_px"] / abs(i - j))
        if used:
            raw[i] = PAIR_COMBINES[combine](np.stack(used), axis=0)
            if box > 1:
                raw[i] = cv2.blur(raw[i], (box, box), borderType=cv2.BORDER_REPLICATE)
        rows.append(
            {
                "frame": i,
                "pairs": len(partners),
                "pairs_used": len(used),
                "camera_ok": bool(partners) and len(used) == len(partners),
                "inliers": float(np.mean(inliers)) if inliers else 0.0,
                "camera_px": float(np.median(camera)) if camera else 0.0,
                "reliable": bool(used),
            }
        )
    diagnostics = pd.DataFrame(rows)

    # One scale for the whole shot, from the pixels inside the border band
    # (every other pixel and row is enough for a percentile, and faster).
    _zero_border(raw, border)
    band = _band(fh, fw, border)
    interior = raw[:, band : fh - band : 2, band : fw - band : 2] if min(fh, fw) > 2 * band else raw[:, ::2, ::2]
    reliable = diagnostics["reliable"].to_numpy(dtype=bool)
    shot_scale = float(np.percentile(interior[reliable], percentile)) if reliable.any() else 0.0
    divisor = max(shot_scale, min_scale)
    diagnostics["residual_px"] = np.percentile(interior.reshape(t, -1), percentile, axis=1)
    diagnostics["scale_px"] = divisor

    raw *= 1.0 / divisor
    np.clip(raw, 0.0, 1.0, out=raw)
    if (fw, fh) == (w, h):
        saliency = raw
    else:
        saliency = np.empty((t, h, w), np.float32)
        for i in range(t):
            cv2.resize(raw[i], (w, h), dst=saliency[i], interpolation=cv2.INTER_LINEAR)
        _zero_border(saliency, border)  # the exact band at the input size
    return saliency, diagnostics[list(_DIAGNOSTIC_COLUMNS)]
