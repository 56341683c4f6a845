"""The label-free motion segmenter: one per-shot path behind the pipeline and ``motionmasks segment``.

    source ──plan_shots──▶ ShotRecords ──decode_parts──▶ frames at the working size (one in-order pass)
        ──shot_saliency──▶ saliency (8-bit) ──shot_masks──▶ soft masks (8-bit, working size) ──mask_at_size──▶ PNG

Every function here is used by both entry points: the pipeline runs
:func:`plan_shots` in its ``shots`` stage, :func:`shot_saliency` in ``motion``
and :func:`shot_masks` in ``consensus`` (the 8-bit maps between them are its
shards); ``motionmasks segment`` runs them one after the other in one process.
Saliency and masks are quantised to 8 bits in both, so the two give the same
masks byte for byte.

Everything is computed at the working size (longer side
``shots.working_max_side``, 256 px by default); only the final masks are
upsampled, so the cost per frame barely depends on the input size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from motionmasks.atomic import atomic_dir
from motionmasks.consensus import consensus_voting
from motionmasks.formats import ShotRecord, mask_at_size, quantise
from motionmasks.motion import motion_saliency
from motionmasks.shots import split_video
from motionmasks.video import VideoError, fit_max_side, frame_files, probe, read_frames, resize_max_side

DEFAULT_WORKING_MAX_SIDE = 256
_NOT_ALGORITHM = {"max_failure_fraction"}  # params that decide a stage's fate, not a mask


@dataclass(frozen=True)
class Segmenter:
    """Every setting of the segmenter, from ``params.yaml`` (:meth:`from_params`) or the defaults.

    ``shots`` are :func:`motionmasks.shots.split_video`'s keyword arguments
    (``min_shot`` and ``max_shot`` included), ``motion``
    :func:`motionmasks.motion.motion_saliency`'s and ``consensus``
    :func:`motionmasks.consensus.consensus_voting`'s.
    """

    shots: dict[str, Any] = field(default_factory=dict)
    working_max_side: int = DEFAULT_WORKING_MAX_SIDE
    motion: dict[str, Any] = field(default_factory=dict)
    consensus: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Any) -> Segmenter:
        """From a validated ``motionmasks.params.Params`` (its shots, motion and consensus groups)."""
        return cls(
            **cls.shot_settings(params.shots),
            motion=params.motion.model_dump(exclude=_NOT_ALGORITHM),
            consensus=params.consensus.model_dump(exclude=_NOT_ALGORITHM),
        )

    @staticmethod
    def shot_settings(shots: Any) -> dict[str, Any]:
        """The shots group's part (``shots``, ``working_max_side``), for the stage that needs only it."""
        return {
            "shots": shots.model_dump(exclude=_NOT_ALGORITHM | {"working_max_side"}),
            "working_max_side": shots.working_max_side,
        }


def plan_shots(
    source: str | Path, video: str, segmenter: Segmenter, *, max_pixels: int | None = None
) -> list[ShotRecord]:
    """Split ``source`` into shots and their parts: the records every later step works on.

    Raises :class:`motionmasks.video.VideoError` naming the file when it
    cannot be read (or a frame is over ``max_pixels``).
    """
    info = probe(source, exact=False, max_pixels=max_pixels)
    work_width, work_height = fit_max_side(info.width, info.height, segmenter.working_max_side)
    return [
        ShotRecord(
            video=video,
            source=str(source),
            shot=row["shot"],
            part=row["part"],
            first=row["first"],
            last=row["last"],
            fps=row["fps"],
            width=info.width,
            height=info.height,
            work_width=work_width,
            work_height=work_height,
            status=row["status"],
        )
        for row in split_video(source, **segmenter.shots)
    ]


def decode_parts(records: Sequence[ShotRecord]) -> Iterator[tuple[ShotRecord, np.ndarray]]:
    """Each record's frames at its working size, ``(T, h, w, 3)`` uint8 RGB, in one in-order pass.

    The records must be of one source. The video is decoded once, from its
    first frame to the last one any record needs (never re-read from frame 0
    per shot); only the part being filled is held, at the working size.

    Raises
    ------
    VideoError
        If the video ends before a record's last frame.
    """
    if not records:
        return
    sources = {r.source for r in records}
    if len(sources) != 1:
        raise ValueError(f"decode_parts takes the records of one source, got {sorted(sources)}")
    pending = sorted(records, key=lambda r: r.first)
    source = pending[0].source
    current: list[np.ndarray] = []
    position = 0
    # decoded straight at the working size where the format allows (JPEG frames scale in the decoder)
    for index, frame in read_frames(source, stop=pending[-1].last + 1, max_side=max(pending[0].work_size)):
        record = pending[position]
        if index < record.first:
            continue  # a frame of no part (e.g. of a shot too short to use)
        if (frame.shape[1], frame.shape[0]) != record.work_size:
            frame = cv2.resize(frame, record.work_size, interpolation=cv2.INTER_AREA)
        current.append(frame)
        if index == record.last:
            yield record, np.stack(current)
            current = []
            position += 1
            if position == len(pending):
                return
    record = pending[position]
    raise VideoError(
        f"{source}: ended before frame {record.last} (shot {record.shot}, part {record.part}); "
        "the file changed since the shots stage or is truncated: re-run from download"
    )


def shot_saliency(
    frames: np.ndarray, motion: dict[str, Any] | None = None, timings: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Motion saliency of one part, 8-bit (T, h, w) uint8, and each frame's ``reliable`` flag (T,) bool."""
    start = time.perf_counter()
    saliency, diagnostics = motion_saliency(frames, **(motion or {}))
    if timings is not None:
        timings["saliency"] = timings.get("saliency", 0.0) + time.perf_counter() - start
    return quantise(saliency), diagnostics["reliable"].to_numpy(bool)


def shot_masks(
    frames: np.ndarray, saliency: np.ndarray, consensus: dict[str, Any] | None = None, timings: dict | None = None
) -> np.ndarray:
    """Soft masks of one part by consensus voting on its 8-bit saliency: (T, h, w) uint8 at the working size."""
    options = {**(consensus or {}), "working_max_side": None}  # frames are at the working size already
    soft = consensus_voting(frames, np.asarray(saliency, np.float32) / 255.0, timings=timings, **options)
    return quantise(soft)


def segment_frames(
    frames: np.ndarray,
    *,
    working_max_side: int | None = DEFAULT_WORKING_MAX_SIDE,
    motion: dict[str, Any] | None = None,
    consensus: dict[str, Any] | None = None,
    timings: dict | None = None,
) -> np.ndarray:
    """Soft foreground maps of one shot held in memory, without any label.

    The same steps as the pipeline (shrink to the working size,
    :func:`shot_saliency`, :func:`shot_masks`, ``formats.mask_at_size``), for arrays.

    Parameters
    ----------
    frames : ndarray, (T, H, W, 3) uint8
        RGB frames of one shot, in order.
    working_max_side : int or None
        Longer side the frames are shrunk to first (None: the input size).
    motion, consensus : dict or None
        Keyword arguments of :func:`motionmasks.motion.motion_saliency` and
        :func:`motionmasks.consensus.consensus_voting` (None: their defaults).
    timings : dict or None
        If given, seconds per stage are added to it: ``"saliency"`` (flow
        included), the consensus stages (see ``consensus_voting``) and
        ``"upsample"``.

    Returns
    -------
    maps : ndarray, (T, H, W) float32 in [0, 1]
        Soft foreground maps at the input size, in steps of 1/255.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3) (RGB), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise TypeError(
            f"frames must be uint8 RGB, got {frames.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8)"
        )
    t_count, h, w = frames.shape[:3]
    if t_count == 0 or h == 0 or w == 0:
        return np.zeros((t_count, h, w), np.float32)
    small = np.stack([resize_max_side(frame, working_max_side) for frame in frames])
    saliency, _ = shot_saliency(small, motion, timings)
    masks = shot_masks(small, saliency, consensus, timings)
    start = time.perf_counter()
    maps = np.empty((t_count, h, w), np.float32)
    for t in range(t_count):
        maps[t] = mask_at_size(masks[t], w, h) / np.float32(255.0)
    if timings is not None:
        timings["upsample"] = timings.get("upsample", 0.0) + time.perf_counter() - start
    return maps


def segment_source(
    records: Sequence[ShotRecord], segmenter: Segmenter, timings: dict | None = None
) -> Iterator[tuple[ShotRecord, np.ndarray]]:
    """Each record's 8-bit soft masks at the working size, ``(T, h, w)``, in one pass over its source."""
    for record, frames in decode_parts(records):
        saliency, _ = shot_saliency(frames, segmenter.motion, timings)
        yield record, shot_masks(frames, saliency, segmenter.consensus, timings)


def mask_stems(source: Path) -> Callable[[int], str]:
    """The PNG name (without suffix) of frame ``index``: the frame's own for a frame folder, else ``NNNNN``."""
    stems = [p.stem for p in frame_files(source)] if source.is_dir() else None
    return (lambda index: stems[index]) if stems else (lambda index: f"{index:05d}")


def write_mask_folder(
    source: str | Path,
    target: str | Path,
    segmenter: Segmenter | None = None,
    *,
    max_pixels: int | None = None,
    progress: Callable[[int], Any] | None = None,
) -> int:
    """Segment ``source`` (a video file or a frame folder) into ``target``: one 8-bit PNG per frame.

    PNGs are 0-255 soft masks at the frame's size, named like the frames of a
    frame folder (``NNNNN.png`` for a video). Every frame gets one, those of
    shots too short for the pipeline's training data included. ``target`` is
    written atomically and only replaces a folder motionmasks wrote (see
    :func:`motionmasks.formats.atomic_dir`). ``progress(n)`` is told after
    every frame written. Returns the number of frames written.

    Raises
    ------
    motionmasks.video.VideoError
        The input cannot be read (or a frame is over ``max_pixels``).
    motionmasks.formats.NotOurFolderError
        ``target`` exists and was not written by motionmasks.
    """
    source, target = Path(source), Path(target)
    segmenter = segmenter or Segmenter()
    records = plan_shots(source, source.name, segmenter, max_pixels=max_pixels)
    with atomic_dir(target) as tmp:
        return write_masks(source, records, tmp, segmenter, progress=progress)


def write_masks(
    source: str | Path,
    records: Sequence[ShotRecord],
    folder: str | Path,
    segmenter: Segmenter | None = None,
    *,
    progress: Callable[[int], Any] | None = None,
) -> int:
    """The PNGs of ``records`` (some or all of ``source``'s) into ``folder``, which must exist.

    The part of :func:`write_mask_folder` that several workers can share: each
    takes a group of records (:func:`split_records`) and writes into the same
    temporary folder, which the caller swaps into place once all are done.
    """
    source, folder = Path(source), Path(folder)
    stem = mask_stems(source)
    written = 0
    for record, masks in segment_source(records, segmenter or Segmenter()):
        for index, mask in zip(range(record.first, record.last + 1), masks):
            png = f"{stem(index)}.png"
            if not cv2.imwrite(str(folder / png), mask_at_size(mask, record.width, record.height)):
                raise OSError(f"could not write {png} (frame {index})")
            written += 1
            if progress is not None:
                progress(1)
    return written


def split_records(records: Sequence[ShotRecord], groups: int) -> list[list[ShotRecord]]:
    """``records`` in at most ``groups`` runs of consecutive records with about equal frame counts.

    Each record (a shot, or a part of a long one) is segmented on its own, so
    the groups give exactly the masks of the whole; consecutive, so that each
    worker decodes one stretch of the video. Empty groups are left out.
    """
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    ordered = sorted(records, key=lambda r: r.first)
    total = sum(r.frames for r in ordered)
    runs: list[list[ShotRecord]] = [[] for _ in range(groups)]
    done = 0
    for record in ordered:
        # the group whose share of the frames this record's middle falls in
        middle = done + record.frames / 2
        runs[min(groups - 1, int(middle * groups / max(total, 1)))].append(record)
        done += record.frames
    return [run for run in runs if run]
