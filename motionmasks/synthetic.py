"""Synthetic videos with exact truth: the embedded default corpus.

Each video is a few shots joined by hard cuts. A shot is a camera that pans
(and, for some shots, zooms) over a real photograph that scikit-image ships,
with one or more foreground objects (ellipse, polygon, star, blob or a horse
silhouette, textured with a patch of another photograph or a procedural
pattern) moving independently of the camera. Every shot uses a different
background photograph than the shot before it, so a cut joins unrelated scenes.

The truth is exact by construction: objects are drawn with hard alpha (the
alpha is warped with nearest-neighbour sampling and pixels are copied, never
blended), so a frame's mask is exactly the set of pixels drawn by an object,
and the cut positions are known.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed
gives bit-identical arrays. The background and camera of a shot come from a
random stream of their own, separate from the objects', so ``max_objects=0``
gives the same scenes without objects (camera-only clips: negatives on which
nothing but the camera moves).

Geometry conventions
--------------------
Frame pixel ``(x, y)`` has its centre at integer coordinates, ``x`` to the
right and ``y`` down. ``SyntheticVideo.camera[t]`` is the 2x3 affine that maps
frame pixel ``(x, y, 1)`` to the pixel of the (upscaled) background that it
shows; ``camera[t, 0, 0]`` is the zoom (background pixels per frame pixel; it
falls when the camera zooms in).
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import skimage.data

from .formats import write_masks
from .video import write_video

# Photographs used as backgrounds. Left out: ``cat`` (the same photo as
# ``chelsea``), ``horse`` (a binary silhouette: used as an object shape) and
# ``colorwheel`` (mostly flat: used only as an object texture).
BACKGROUND_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "coins",
    "brick",
    "grass",
    "gravel",
    "cell",
    "moon",
)
TEXTURE_PHOTOS = BACKGROUND_PHOTOS + ("colorwheel",)
SHAPES = ("ellipse", "polygon", "star", "blob", "silhouette")
PATTERNS = ("stripes", "checker", "noise")

# The fundus photograph sits in a black disc; keep the centre of the disc.
_CENTRE_CROP = {"retina": 0.62}
# Fine stochastic textures are magnified at least this much: unmagnified, a pan
# changes every pixel between frames about as much as a cut does.
_MIN_MAGNIFICATION = {"grass": 3.0, "gravel": 3.0, "brick": 2.0}
# Speeds and sizes are set for 320x240 and scaled with the frame's diagonal.
_REFERENCE_SIZE = (320, 240)


@dataclass
class SyntheticVideo:
    """A synthetic video and its exact truth.

    Attributes
    ----------
    frames : ndarray, shape (T, H, W, 3), uint8
        RGB frames.
    masks : ndarray, shape (T, H, W), bool
        Union of the pixels drawn by the moving objects in each frame.
    shots : list of (int, int)
        ``(first, last)`` inclusive frame indices of each shot; contiguous and
        covering ``0 .. T-1``.
    fps : float
        Frame rate (frames per second).
    camera : ndarray, shape (T, 2, 3), float64, optional
        Per frame, the affine from frame pixels to background pixels (see the
        module docstring); ``camera[:, 0, 0]`` is the zoom.
    backgrounds : tuple of str
        The scikit-image photograph behind each shot.
    """

    frames: np.ndarray
    masks: np.ndarray
    shots: list[tuple[int, int]]
    fps: float
    camera: np.ndarray | None = None
    backgrounds: tuple[str, ...] = ()

    @property
    def cuts(self) -> list[int]:
        """First frame of every shot but the first (a hard cut precedes it)."""
        return [first for first, _ in self.shots[1:]]


@dataclass
class _Sprite:
    texture: np.ndarray  # (s, s, 3) uint8, defined on the whole canvas so edges sample real texture
    alpha: np.ndarray  # (s, s) uint8 in {0, 1}: the object's shape
    to_sprite: np.ndarray  # (T, 2, 3) float64: frame pixel -> sprite pixel


@dataclass
class _Shot:
    background: np.ndarray  # (h, w, 3) uint8, the upscaled photograph
    camera: np.ndarray  # (T, 2, 3) float64: frame pixel -> background pixel
    sprites: list[_Sprite]


def make_video(
    seed: int,
    *,
    width: int = 320,
    height: int = 240,
    shots: int | tuple[int, int] = (2, 4),
    shot_frames: tuple[int, int] = (30, 60),
    fps: float = 25.0,
    zoom_probability: float = 0.4,
    max_objects: int = 2,
) -> SyntheticVideo:
    """Make one synthetic video with exact masks and cut positions.

    Parameters
    ----------
    seed : int
        Non-negative seed of ``numpy.random.default_rng``; the same seed and
        arguments give bit-identical arrays.
    width, height : int
        Frame size in pixels, each at least 32.
    shots : int or (int, int)
        Number of shots, or an inclusive ``(low, high)`` range it is drawn
        from; at least 1.
    shot_frames : (int, int)
        Inclusive range each shot's length (frames) is drawn from; at least 1.
    fps : float
        Frame rate recorded with the video; motion is set per frame.
    zoom_probability : float
        Probability in [0, 1] that a shot zooms (in or out, by 1.2-1.6x over
        the shot) while it pans.
    max_objects : int
        Each shot holds between 1 and ``max_objects`` moving objects; 0 makes
        camera-only clips (empty masks) with the same scenes as any other
        ``max_objects`` for this seed.

    Returns
    -------
    SyntheticVideo
        Frames (T, H, W, 3) uint8, masks (T, H, W) bool, shots, fps, camera.

    Raises
    ------
    ValueError
        If an argument is out of range; the message names it.

    Notes
    -----
    The camera pans at 2-4.5 px/frame (at 320x240; speeds and sizes scale with
    the frame diagonal) along a gently turning path. Objects cover about
    5-24 % of the frame together (measured over 60 seeds), bounce inside it
    (at most ~8 % of an object leaves the frame), rotate and breathe slowly.
    In every frame each object's centre moves at least 2 px/frame relative to
    the background beneath it (the camera's pan and zoom included), so there
    is always motion that sets it apart from the camera's.

    Fine stochastic textures (grass, gravel, brick) are magnified so that a
    pan changes consecutive frames much less than a cut does.

    Examples
    --------
    >>> video = make_video(0, shots=2, shot_frames=(10, 10))
    >>> video.frames.shape, video.masks.shape, video.cuts
    ((20, 240, 320, 3), (20, 240, 320), [10])
    """
    width = _int_at_least("width", width, 32)
    height = _int_at_least("height", height, 32)
    shots_range = _int_range("shots", shots)
    frames_range = _int_range("shot_frames", shot_frames)
    if not (isinstance(fps, (int, float, np.number)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
    if not (isinstance(zoom_probability, (int, float, np.number)) and 0 <= zoom_probability <= 1):
        raise ValueError(f"zoom_probability must be in [0, 1], got {zoom_probability!r}")
    max_objects = _int_at_least("max_objects", max_objects, 0)
    seed = _int_at_least("seed", seed, 0)

    rng = np.random.default_rng(seed)
    n_shots = int(rng.integers(shots_range[0], shots_range[1] + 1))
    lengths = rng.integers(frames_range[0], frames_range[1] + 1, size=n_shots)
    photos = _photo_sequence(rng, n_shots)
    unit = math.hypot(width, height) / math.hypot(*_REFERENCE_SIZE)

    starts = np.concatenate([[0], np.cumsum(lengths)])
    frames = np.empty((starts[-1], height, width, 3), np.uint8)
    masks = np.zeros((starts[-1], height, width), bool)
    camera = np.empty((starts[-1], 2, 3))
    for shot_rng, first, last, photo in zip(rng.spawn(n_shots), starts[:-1], starts[1:], photos):
        scene_rng, object_rng = shot_rng.spawn(2)
        shot = _plan_shot(
            scene_rng, object_rng, photo, last - first, width, height, unit, zoom_probability, max_objects
        )
        _render_shot(shot, frames[first:last], masks[first:last])
        camera[first:last] = shot.camera
    return SyntheticVideo(
        frames=frames,
        masks=masks,
        shots=[(int(first), int(last) - 1) for first, last in zip(starts[:-1], starts[1:])],
        fps=float(fps),
        camera=camera,
        backgrounds=tuple(photos),
    )


def write_synthetic_corpus(out_dir: Path, *, videos: int, seed: int, **make_kwargs) -> pd.DataFrame:
    """Write ``videos`` synthetic videos and their masks; return the shot truth.

    Video ``i`` is ``make_video(seed + i, **make_kwargs)``, written as
    ``out_dir/synth-{i:03d}.mp4`` (MPEG-4, lossy) with its masks in
    ``out_dir/synth-{i:03d}.masks.npz`` (:func:`motionmasks.formats.write_masks`,
    one mask per frame, frame indices ``0 .. T-1``).

    Parameters
    ----------
    out_dir : Path
        Folder to write into (created if missing).
    videos : int
        Number of videos, at least 0.
    seed : int
        Seed of the first video, at least 0.
    **make_kwargs
        Passed on to :func:`make_video` (width, height, shots, ...).

    Returns
    -------
    pandas.DataFrame
        One row per shot: ``video`` (str id), ``shot`` (int, from 0), ``first``
        and ``last`` (int, inclusive frame indices), ``fps`` (float).
    """
    videos = _int_at_least("videos", videos, 0)
    seed = _int_at_least("seed", seed, 0)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(videos):
        video_id = f"synth-{i:03d}"
        video = make_video(seed + i, **make_kwargs)
        write_video(out_dir / f"{video_id}.mp4", video.frames, video.fps)
        write_masks(out_dir / f"{video_id}.masks.npz", video.masks, np.arange(len(video.masks)))
        rows += [
            {"video": video_id, "shot": k, "first": first, "last": last, "fps": video.fps}
            for k, (first, last) in enumerate(video.shots)
        ]
    table = pd.DataFrame(rows, columns=["video", "shot", "first", "last", "fps"])
    return table.astype({"video": object, "shot": np.int64, "first": np.int64, "last": np.int64, "fps": np.float64})


# --------------------------------------------------------------------------- validation


def _int_at_least(name: str, value, low: int) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}") from None
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    return value


def _int_range(name: str, value) -> tuple[int, int]:
    if not isinstance(value, (tuple, list)):
        value = (value, value)
    if len(value) != 2:
        raise ValueError(f"{name} must be an integer or a (low, high) pair, got {value!r}")
    low, high = (_int_at_least(name, v, 1) for v in value)
    if low > high:
        raise ValueError(f"{name} must be (low, high) with low <= high, got ({low}, {high})")
    return low, high


# --------------------------------------------------------------------------- photographs


@functools.cache
def _photo(name: str) -> np.ndarray:
    """A scikit-image photograph, (h, w) or (h, w, 3) uint8, contrast-stretched.

    Stretching the 1st-99th percentiles to 0-255 lifts dark photos (the Hubble
    deep field) enough that a pan over them shows. Read-only: it is cached.
    """
    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 3:
        image = image[..., :3]
    crop = _CENTRE_CROP.get(name)
    if crop:
        h, w = image.shape[:2]
        dy, dx = int(h * (1 - crop) / 2), int(w * (1 - crop) / 2)
        image = image[dy : h - dy, dx : w - dx]
    low, high = np.percentile(image, [1, 99])
    image = np.clip((image.astype(np.float32) - low) * (255.0 / max(high - low, 1.0)), 0, 255)
    image = np.ascontiguousarray(image.astype(np.uint8))
    image.flags.writeable = False
    return image


def _to_rgb(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB as is; grayscale tinted with a random colour so scenes differ in colour too."""
    if image.ndim == 3:
        return image
    tint = 0.45 + 0.55 * rng.random(3)
    tint /= tint.max()
    return (image[..., None].astype(np.float32) * tint.astype(np.float32)).astype(np.uint8)


def _photo_sequence(rng: np.random.Generator, n_shots: int) -> list[str]:
    """Background photo of each shot: no repeats until all are used, never twice in a row."""
    names: list[str] = []
    while len(names) < n_shots:
        order = [BACKGROUND_PHOTOS[i] for i in rng.permutation(len(BACKGROUND_PHOTOS))]
        if names and order[0] == names[-1]:
            order.append(order.pop(0))
        names += order
    return names[:n_shots]


# --------------------------------------------------------------------------- one shot


def _plan_shot(
    scene_rng: np.random.Generator,
    object_rng: np.random.Generator,
    photo: str,
    length: int,
    width: int,
    height: int,
    unit: float,
    zoom_probability: float,
    max_objects: int,
) -> _Shot:
    scales, centres = _camera_path(scene_rng, length, unit, zoom_probability)
    background, camera = _background(scene_rng, photo, scales, centres, width, height)
    n_objects = int(object_rng.integers(1, max_objects + 1)) if max_objects else 0
    areas = _object_areas(object_rng, n_objects) * (width * height)
    sprites = [_sprite(object_rng, area, photo, camera, width, height, unit) for area in areas]
    return _Shot(background, camera, sprites)


def _camera_path(
    rng: np.random.Generator, length: int, unit: float, zoom_probability: float
) -> tuple[np.ndarray, np.ndarray]:
    """Zoom (T,) and viewport centre (T, 2) in background pixels, starting at (0, 0).

    The pan turns by up to ~30 degrees and changes speed by up to 30 % over the
    shot, as a hand-held or tracking camera would.
    """
    t = np.linspace(0.0, 1.0, length)
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(2.0, 4.5) * unit
    end_angle = angle + rng.uniform(-0.5, 0.5)
    end_speed = speed * rng.uniform(0.7, 1.3)
    v0 = speed * np.array([np.cos(angle), np.sin(angle)])
    v1 = end_speed * np.array([np.cos(end_angle), np.sin(end_angle)])
    velocities = v0 + (v1 - v0) * t[:, None]
    if rng.random() < zoom_probability:
        factor = rng.uniform(1.2, 1.6) ** rng.choice([-1.0, 1.0])
        scales = factor**t  # < 1 zooms in: fewer background pixels per frame pixel
    else:
        scales = np.ones(length)
    # The pan is in frame pixels; in background pixels it scales with the zoom.
    steps = velocities[:-1] * scales[:-1, None]
    centres = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    return scales, centres


def _background(
    rng: np.random.Generator,
    photo: str,
    scales: np.ndarray,
    centres: np.ndarray,
    width: int,
    height: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Resize the photo to just cover the camera's path; return it and the per-frame viewport affines."""
    image = _to_rgb(_photo(photo), rng)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    half = np.array([(width - 1) / 2, (height - 1) / 2])
    low = (centres - scales[:, None] * half).min(axis=0)
    high = (centres + scales[:, None] * half).max(axis=0)
    extent = high - low + 2  # +2: bilinear sampling never reaches the border
    ph, pw = image.shape[:2]
    factor = max(extent[0] / pw, extent[1] / ph, _MIN_MAGNIFICATION.get(photo, 0.0)) * rng.uniform(1.0, 1.2)
    size = (math.ceil(pw * factor), math.ceil(ph * factor))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    background = cv2.resize(np.ascontiguousarray(image), size, interpolation=interpolation)
    offset = rng.uniform(0, 1, 2) * (np.array(size) - extent) + 1 - low
    camera = np.zeros((len(scales), 2, 3))
    camera[:, 0, 0] = camera[:, 1, 1] = scales
    camera[:, :, 2] = centres - scales[:, None] * half + offset
    return background, camera


def _object_areas(rng: np.random.Generator, n_objects: int) -> np.ndarray:
    """Area of each object as a fraction of the frame: 6-20 % together, at least 3 % each."""
    if n_objects == 0:
        return np.zeros(0)
    total = rng.uniform(0.06, 0.2)
    shares = rng.dirichlet(np.full(n_objects, 3.0))
    return np.maximum(total * shares, 0.03)


def _sprite(
    rng: np.random.Generator,
    area: float,
    background_photo: str,
    camera: np.ndarray,
    width: int,
    height: int,
    unit: float,
) -> _Sprite:
    shape = SHAPES[rng.integers(len(SHAPES))]
    outline = _outline(rng, shape)
    outline *= math.sqrt(area / cv2.contourArea(outline.astype(np.float32)))
    radius = float(np.linalg.norm(outline, axis=1).max())
    size = 2 * math.ceil(radius) + 3
    centre = (size - 1) / 2
    alpha = np.zeros((size, size), np.uint8)
    # Sub-pixel vertices (shift=4) but no anti-aliasing: the alpha stays hard.
    cv2.fillPoly(alpha, [np.round((outline + centre) * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    if rng.random() < 0.5:
        texture = _photo_patch(rng, size, background_photo)
    else:
        texture = _pattern(rng, size)
    to_sprite = _object_motion(rng, radius, centre, shape, camera, width, height, unit)
    return _Sprite(texture, alpha, to_sprite)


def _outline(rng: np.random.Generator, shape: str) -> np.ndarray:
    """Closed outline (N, 2) float64 around the origin, of arbitrary size."""
    if shape == "ellipse":
        theta = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        return np.stack([np.cos(theta), rng.uniform(0.45, 1.0) * np.sin(theta)], axis=1)
    if shape == "polygon":
        n = int(rng.integers(3, 9))
        theta = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n)
        r = rng.uniform(0.55, 1.0, n)
    elif shape == "star":
        n = int(rng.integers(4, 9))
        theta = np.arange(2 * n) * (np.pi / n)
        r = np.where(np.arange(2 * n) % 2, rng.uniform(0.35, 0.6), 1.0)
    elif shape == "blob":
        theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        k = np.arange(2, 6)[:, None]
        amplitude = rng.uniform(0, 0.25, (4, 1)) / np.sqrt(k - 1)
        r = np.maximum(1 + (amplitude * np.cos(k * theta + rng.uniform(0, 2 * np.pi, (4, 1)))).sum(axis=0), 0.3)
    elif shape == "silhouette":
        outline = _horse_outline()
        return outline * [rng.choice([-1.0, 1.0]), 1.0]  # facing left or right
    else:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)


@functools.cache
def _horse_outline() -> np.ndarray:
    """Outer contour of scikit-image's horse silhouette, centred on its centroid."""
    horse = (~skimage.data.horse()).astype(np.uint8)  # the horse is False (black) on True
    contours, _ = cv2.findContours(horse, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=cv2.contourArea)[:, 0].astype(np.float64)
    moments = cv2.moments(contour.astype(np.float32))
    outline = contour - [moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]]
    outline.flags.writeable = False
    return outline


def _photo_patch(rng: np.random.Generator, size: int, background_photo: str) -> np.ndarray:
    """A random crop of a photograph other than the background's, resized to (size, size, 3)."""
    names = [name for name in TEXTURE_PHOTOS if name != background_photo]
    image = _photo(names[rng.integers(len(names))])
    ph, pw = image.shape[:2]
    side = int(np.clip(size * rng.uniform(0.6, 1.6), 8, min(ph, pw)))
    y, x = rng.integers(0, ph - side + 1), rng.integers(0, pw - side + 1)
    patch = _to_rgb(image[y : y + side, x : x + side], rng)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=interpolation)


def _pattern(rng: np.random.Generator, size: int) -> np.ndarray:
    """A procedural texture (size, size, 3) uint8 in two random, clearly different colours."""
    colours = rng.integers(0, 256, (2, 3))
    while np.abs(colours[0] - colours[1]).sum() < 150:
        colours = rng.integers(0, 256, (2, 3))
    kind = PATTERNS[rng.integers(len(PATTERNS))]
    y, x = np.mgrid[:size, :size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    if kind == "stripes":
        weight = (np.floor(u / rng.uniform(3, 9)) % 2).astype(np.float32)
    elif kind == "checker":
        cell = rng.uniform(4, 12)
        weight = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    else:
        noise = rng.standard_normal((size, size)).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), rng.uniform(2, 6))
        weight = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
    texture = colours[0] + (colours[1] - colours[0]) * weight[..., None]
    return np.clip(texture, 0, 255).astype(np.uint8)


def _object_motion(
    rng: np.random.Generator,
    radius: float,
    centre: float,
    shape: str,
    camera: np.ndarray,
    width: int,
    height: int,
    unit: float,
    min_relative_speed: float = 2.0,
    max_speed: float = 4.5,
    tries: int = 100,
) -> np.ndarray:
    """Per-frame affine (T, 2, 3) from frame pixels to sprite pixels.

    The object's centre moves at a constant velocity (up to ``max_speed * unit``
    px/frame, zero included: a camera tracking the object) and bounces off a
    box that keeps at least ~90 % of the object inside; it also rotates and
    slowly grows and shrinks. Start and velocity are drawn again (up to
    ``tries`` times, then the best draw is kept) until, at every frame, the
    centre moves at least ``min_relative_speed * unit`` px/frame relative to
    the background beneath it (the camera's pan and zoom).
    """
    length = len(camera)
    t = np.arange(length, dtype=np.float64)
    breathing = rng.uniform(0, 0.12)
    scale = 1 + breathing * np.sin(2 * np.pi * t / rng.uniform(25, 80) + rng.uniform(0, 2 * np.pi))
    upright = shape == "silhouette"  # a horse may lean, not stand on its head
    angle0 = rng.uniform(-0.3, 0.3) if upright else rng.uniform(0, 2 * np.pi)
    angle = angle0 + np.deg2rad(rng.uniform(-1.0, 1.0) if upright else rng.uniform(-2.0, 2.0)) * t

    # Centres within `margin` of the edge leave at most a thin cap outside.
    margin = 0.75 * radius * (1 + breathing)
    span = np.maximum(np.array([width - 1, height - 1]) - 2 * margin, 0.0)
    low = np.where(span > 0, margin, [(width - 1) / 2, (height - 1) / 2])

    best, best_gap = None, -1.0
    for _ in range(tries):
        direction = rng.uniform(0, 2 * np.pi)
        velocity = rng.uniform(0, max_speed) * unit * np.array([np.cos(direction), np.sin(direction)])
        start = low + rng.random(2) * span
        position = _bounce(start + velocity * t[:, None], low, span)
        gap = _min_relative_speed(position, camera)
        if gap > best_gap:
            best, best_gap = position, gap
        if gap >= min_relative_speed * unit:
            break

    # frame -> sprite: q = centre + R(-angle) (p - position) / scale
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    to_sprite = np.empty((length, 2, 3))
    to_sprite[:, 0, 0], to_sprite[:, 0, 1] = cos, sin
    to_sprite[:, 1, 0], to_sprite[:, 1, 1] = -sin, cos
    to_sprite[:, :, 2] = centre - np.einsum("tij,tj->ti", to_sprite[:, :, :2], best)
    return to_sprite


def _min_relative_speed(position: np.ndarray, camera: np.ndarray) -> float:
    """Smallest per-frame speed (px/frame) of the path ``position`` (T, 2) relative to the background.

    The background point under ``position[t]`` (background pixel ``A_t p + b_t``)
    is seen in frame t+1 at ``A_{t+1}^-1 (A_t p + b_t - b_{t+1})``.
    """
    if len(position) < 2:
        return math.inf
    world = np.einsum("tij,tj->ti", camera[:-1, :, :2], position[:-1]) + camera[:-1, :, 2]
    seen = np.linalg.solve(camera[1:, :, :2], (world - camera[1:, :, 2])[..., None])[..., 0]
    return float(np.linalg.norm(position[1:] - seen, axis=1).min())


def _bounce(path: np.ndarray, low: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Fold an unbounded path (T, 2) into ``[low, low + span]`` by reflection at the walls."""
    period = np.where(span > 0, 2 * span, 1.0)
    folded = np.mod(path - low, period)
    return low + np.where(span > 0, span - np.abs(folded - span), 0.0)


def _render_shot(shot: _Shot, frames: np.ndarray, masks: np.ndarray) -> None:
    """Draw one shot into ``frames`` (T, H, W, 3) uint8 and ``masks`` (T, H, W) bool (all False on entry)."""
    height, width = frames.shape[1:3]
    inverse = cv2.WARP_INVERSE_MAP  # the affines map frame pixels to source pixels
    for i, frame in enumerate(frames):
        cv2.warpAffine(
            shot.background,
            shot.camera[i],
            (width, height),
            dst=frame,
            flags=cv2.INTER_LINEAR | inverse,
            borderMode=cv2.BORDER_REFLECT,
        )
        for sprite in shot.sprites:
            box = _sprite_box(sprite, i, width, height)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            # Warp only the sprite's bounding box: most of the frame is not touched.
            to_sprite = sprite.to_sprite[i].copy()
            to_sprite[:, 2] += to_sprite[:, :2] @ [x0, y0]
            size = (x1 - x0, y1 - y0)
            drawn = cv2.warpAffine(sprite.alpha, to_sprite, size, flags=cv2.INTER_NEAREST | inverse, borderValue=0)
            drawn = drawn.astype(bool)
            texture = cv2.warpAffine(
                sprite.texture, to_sprite, size, flags=cv2.INTER_LINEAR | inverse, borderMode=cv2.BORDER_REFLECT
            )
            # Hard alpha: pixels are copied, never blended, so the mask is exactly what is drawn.
            np.copyto(frame[y0:y1, x0:x1], texture, where=drawn[..., None])
            masks[i, y0:y1, x0:x1] |= drawn


def _sprite_box(sprite: _Sprite, i: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Frame-pixel box ``(x0, y0, x1, y1)`` (end exclusive) holding sprite ``i``'s canvas, or None if off-frame."""
    to_frame = cv2.invertAffineTransform(sprite.to_sprite[i])
    side = sprite.alpha.shape[0] - 1
    corners = np.array([[0, 0, 1], [side, 0, 1], [0, side, 1], [side, side, 1]], np.float64) @ to_frame.T
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 2, [width, height])
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), int(x1), int(y1)


# --------------------------------------------------------------------------- detection set

# The synthetic detection set's classes: outlines the eye tells apart whatever their texture.
DETECTION_CLASSES = ("ellipse", "horse", "star", "triangle")


def make_detection_image(
    seed: int, *, width: int = 256, height: int = 192, max_objects: int = 3
) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]]]:
    """One synthetic detection image and its objects ``(class, (x1, y1, x2, y2))``.

    A crop of a scikit-image photograph, with 1..``max_objects`` objects of
    :data:`DETECTION_CLASSES` pasted on it (hard alpha, textured like the
    videos' objects), each 3-12 % of the image, some cut by the border or
    partly covered by a later object. A box is the exact extent of the
    object's drawn pixels (covered pixels included, as VOC annotates), in
    pixels with exclusive ends. Same seed, same image.
    """
    rng = np.random.default_rng(seed)
    photo = BACKGROUND_PHOTOS[rng.integers(len(BACKGROUND_PHOTOS))]
    source = _to_rgb(_photo(photo), rng)
    factor = max(width / source.shape[1], height / source.shape[0]) * rng.uniform(1.0, 1.6)
    size = (math.ceil(source.shape[1] * factor), math.ceil(source.shape[0] * factor))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    background = cv2.resize(np.ascontiguousarray(source), size, interpolation=interpolation)
    y0, x0 = rng.integers(0, size[1] - height + 1), rng.integers(0, size[0] - width + 1)
    image = np.ascontiguousarray(background[y0 : y0 + height, x0 : x0 + width])
    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        name = DETECTION_CLASSES[rng.integers(len(DETECTION_CLASSES))]
        if name == "triangle":
            theta = (np.arange(3) + rng.uniform(-0.15, 0.15, 3)) * (2 * np.pi / 3) + rng.uniform(0, 2 * np.pi)
            outline = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        else:
            outline = _outline(rng, {"horse": "silhouette"}.get(name, name))
            angle = rng.uniform(-0.5, 0.5) if name == "horse" else rng.uniform(0, 2 * np.pi)
            rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            outline = outline @ rotation.T
        area = rng.uniform(0.03, 0.12) * width * height
        outline = outline * math.sqrt(area / cv2.contourArea(outline.astype(np.float32)))
        radius = float(np.linalg.norm(outline, axis=1).max())
        centre = rng.uniform([radius * 0.6, radius * 0.6], [width - radius * 0.6, height - radius * 0.6])
        alpha = np.zeros((height, width), np.uint8)
        cv2.fillPoly(alpha, [np.round((outline + centre) * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
        ys, xs = np.nonzero(alpha)
        if len(xs) < 16:
            continue
        side = 2 * math.ceil(radius) + 3
        texture = _photo_patch(rng, side, photo) if rng.random() < 0.5 else _pattern(rng, side)
        top, left = int(round(centre[1])) - side // 2, int(round(centre[0])) - side // 2
        canvas = np.zeros((height + 2 * side, width + 2 * side, 3), np.uint8)
        canvas[top + side : top + 2 * side, left + side : left + 2 * side] = texture
        painted = canvas[side : side + height, side : side + width]
        image[alpha > 0] = painted[alpha > 0]
        objects.append((name, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)))
    return image, objects


def write_detection_set(
    out_dir: Path, *, images: int, seed: int, width: int = 256, height: int = 192, max_objects: int = 3
) -> int:
    """Write ``images`` synthetic images in Pascal VOC layout (``Annotations/``, ``JPEGImages/``).

    Image ``i`` is ``make_detection_image(seed + i)``; boxes are written as
    VOC's 1-based inclusive corners. Returns the number of objects.
    """
    out_dir = Path(out_dir)
    (out_dir / "Annotations").mkdir(parents=True, exist_ok=True)
    (out_dir / "JPEGImages").mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(_int_at_least("images", images, 0)):
        name = f"synth-{i:05d}"
        image, objects = make_detection_image(seed + i, width=width, height=height, max_objects=max_objects)
        cv2.imwrite(str(out_dir / "JPEGImages" / f"{name}.jpg"), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        parts = [
            f"<annotation><filename>{name}.jpg</filename>",
            f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
        ]
        for label, (x1, y1, x2, y2) in objects:
            parts.append(
                f"<object><name>{label}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin>"
                f"<ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            )
        (out_dir / "Annotations" / f"{name}.xml").write_text("".join(parts) + "</annotation>\n")
        total += len(objects)
    return total
