"""The label-free motion segmenter on one clip: motion saliency, then consensus voting.

    frames ──shrink──▶ working size ──motion_saliency──▶ saliency ──consensus_voting──▶ soft maps ──upsample──▶ input size

The same code serves the pipeline stages and the ``motionmasks segment`` CLI.
Everything is computed at the consensus working resolution (longer side
``working_max_side``, 256 px by default) and only the final soft maps are
upsampled, so the cost per frame barely depends on the input size.
"""

from __future__ import annotations

import inspect
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np

from motionmasks.consensus import consensus_voting
from motionmasks.motion import motion_saliency
from motionmasks.shots import split_video
from motionmasks.video import probe, read_frames, resize_max_side

_WORKING_MAX_SIDE = inspect.signature(consensus_voting).parameters["working_max_side"].default


def _working_side(consensus: dict[str, Any]) -> int | None:
    return consensus.get("working_max_side", _WORKING_MAX_SIDE)


def _segment_small(
    small: np.ndarray, motion: dict[str, Any], consensus: dict[str, Any], timings: dict | None
) -> np.ndarray:
    """Soft maps (T, h, w) float32 of frames already at the working size."""
    start = time.perf_counter()
    saliency, _ = motion_saliency(small, **motion)
    if timings is not None:
        timings["saliency"] = timings.get("saliency", 0.0) + time.perf_counter() - start
    options = {**consensus, "working_max_side": None}  # frames are at the working size already
    return consensus_voting(small, saliency, timings=timings, **options)


def _upsample(soft: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear upsampling: a convex combination, so the result stays in [0, 1] without clipping."""
    h, w = size
    if soft.shape == (h, w):
        if out is None:
            return soft
        out[...] = soft
        return out
    return cv2.resize(soft, (w, h), dst=out, interpolation=cv2.INTER_LINEAR)


def segment_frames(
    frames: np.ndarray,
    *,
    motion: dict[str, Any] | None = None,
    consensus: dict[str, Any] | None = None,
    timings: dict | None = None,
) -> np.ndarray:
    """Soft foreground maps of one shot, without any label.

    Parameters
    ----------
    frames : ndarray, (T, H, W, 3) uint8
        RGB frames of one shot, in order.
    motion : dict or None
        Keyword arguments of :func:`motionmasks.motion.motion_saliency`
        (None: its defaults).
    consensus : dict or None
        Keyword arguments of :func:`motionmasks.consensus.consensus_voting`
        (None: its defaults). Its ``working_max_side`` is the size the frames
        are shrunk to before both stages.
    timings : dict or None
        If given, seconds per stage are added to it: ``"saliency"`` (flow
        included) and the consensus stages (see ``consensus_voting``),
        ``"upsample"``.

    Returns
    -------
    maps : ndarray, (T, H, W) float32 in [0, 1]
        Soft foreground maps at the input size.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3) (RGB), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise TypeError(f"frames must be uint8 RGB, got {frames.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8)")
    motion, consensus = dict(motion or {}), dict(consensus or {})
    t_count, h, w = frames.shape[:3]
    if t_count == 0 or h == 0 or w == 0:
        return np.zeros((t_count, h, w), np.float32)
    side = _working_side(consensus)
    small = np.stack([resize_max_side(frame, side) for frame in frames])
    soft = _segment_small(small, motion, consensus, timings)
    start = time.perf_counter()
    maps = np.empty((t_count, h, w), np.float32)
    for t in range(t_count):
        _upsample(soft[t], (h, w), out=maps[t])  # written in place: no full-size temporaries
    if timings is not None:
        timings["upsample"] = timings.get("upsample", 0.0) + time.perf_counter() - start
    return maps


def _report(progress: Any, done: int, total: int, step: int) -> None:
    if progress is None:
        return
    if hasattr(progress, "update"):  # tqdm-like
        progress.update(step)
    else:
        progress(done, total)


def segment_video(
    path: str | Path,
    *,
    max_side: int | None = None,
    chunk: int = 110,
    motion: dict[str, Any] | None = None,
    consensus: dict[str, Any] | None = None,
    progress: Callable[[int, int], Any] | Any | None = None,
    cuts: Sequence[int] | None = None,
    shots: dict[str, Any] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Segment a whole video, streaming it shot by shot in windows of at most ``chunk`` frames.

    Frames are decoded one at a time and kept only at the working size, so
    memory is bounded by ``chunk`` small frames whatever the video's length
    and size. Windows never cross a shot cut (motion across a cut is
    meaningless): the cuts are found first (:func:`motionmasks.shots.split_video`,
    one fast pass at 160 px) unless given, and each shot is split into
    near-equal windows (a 230-frame shot with ``chunk=110`` gives 3 windows of
    77, 77, 76). Each window is segmented on its own (:func:`segment_frames`'s
    code).

    Parameters
    ----------
    path : str or Path
        A video file or a folder of frames (see :mod:`motionmasks.video`).
    max_side : int or None
        Frames are read with the longer side shrunk to this (None: full
        size); the maps come out at that size.
    chunk : int
        Most frames segmented together (*ref* ``maxShot = 110``).
    motion, consensus : dict or None
        Options of the two stages (see :func:`segment_frames`).
    progress : callable(n_done, n_total), tqdm-like object, or None
        Told after each window. A tqdm-like object (with ``update``) gets
        ``update(n_frames_of_the_window)``. ``n_total`` is the container's
        frame count, which some files get wrong.

    Yields
    ------
    (index, soft_map) : (int, ndarray (H, W) float32 in [0, 1])
        Frame index in the video and its soft map, in order.

    Raises
    ------
    motionmasks.video.VideoError
        If the video cannot be read (the message names the file).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 frame, got {chunk}")
    motion, consensus = dict(motion or {}), dict(consensus or {})
    side = _working_side(consensus)
    if cuts is None:
        found = split_video(path, **(shots or {}))
        total = found[-1]["last"] + 1
        cuts = [row["first"] for row in found[1:]]
    else:
        total = probe(path, exact=False).frames
    bounds = [0, *sorted(c for c in cuts if 0 < c < total), total]
    window_sizes: list[int] = []
    for first, end in zip(bounds[:-1], bounds[1:]):
        windows = max(1, math.ceil((end - first) / chunk))
        base, extra = divmod(end - first, windows)
        window_sizes += [base + 1] * extra + [base] * (windows - extra)
    # then `chunk`-sized windows for any frames beyond the count
    sizes = iter(window_sizes)
    size = next(sizes, chunk) or chunk
    done = 0
    indices: list[int] = []
    small: list[np.ndarray] = []
    full_size = (0, 0)

    def flush() -> Iterator[tuple[int, np.ndarray]]:
        nonlocal done
        soft = _segment_small(np.stack(small), motion, consensus, None)
        batch = list(indices)
        indices.clear()
        small.clear()
        done += len(batch)
        _report(progress, done, max(total, done), len(batch))
        for index, frame_map in zip(batch, soft):
            yield index, _upsample(frame_map, full_size)

    for index, frame in read_frames(path, max_side=max_side):
        full_size = frame.shape[:2]
        indices.append(index)
        small.append(resize_max_side(frame, side))
        if len(small) == size:
            yield from flush()
            size = next(sizes, chunk)
    if small:
        yield from flush()


def write_mask_folder(
    source: str | Path,
    target: str | Path,
    *,
    options: dict[str, Any] | None = None,
    max_pixels: int | None = None,
    progress: Callable[[int], Any] | None = None,
) -> int:
    """Segment ``source`` (a video file or a frame folder) into ``target``: one 8-bit PNG per frame.

    PNGs are 0-255 soft masks at the frame's size, named like the frames of a
    frame folder (``NNNNN.png`` for a video). ``target`` is written atomically
    and only replaces a folder motionmasks wrote (see
    :func:`motionmasks.formats.atomic_dir`). ``options`` are
    :func:`segment_video`'s keyword arguments; ``progress(n)`` is told after
    every frame written. Returns the number of frames written.

    Raises
    ------
    motionmasks.video.VideoError
        The input cannot be read (or a frame is over ``max_pixels``).
    motionmasks.formats.NotOurFolderError
        ``target`` exists and was not written by motionmasks.
    """
    from motionmasks.formats import atomic_dir, quantise
    from motionmasks.video import frame_files

    source, target = Path(source), Path(target)
    probe(source, exact=False, max_pixels=max_pixels)
    stems = [p.stem for p in frame_files(source)] if source.is_dir() else None
    written = 0
    with atomic_dir(target) as tmp:
        # frames are shrunk to the working size inside; maps come back at the frame's full size
        for index, soft in segment_video(source, **(options or {})):
            stem = stems[index] if stems else f"{index:05d}"
            if not cv2.imwrite(str(tmp / f"{stem}.png"), quantise(soft)):
                raise OSError(f"could not write {target / stem}.png")
            written += 1
            if progress is not None:
                progress(1)
    return written
