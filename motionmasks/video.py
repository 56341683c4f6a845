"""Reading videos: a video file (anything OpenCV's FFmpeg backend decodes) or a
folder of frames (``00000.jpg``, ``00001.jpg``, ... as in DAVIS).

Frames come out as RGB uint8 arrays (H, W, 3), streamed one at a time so a long
high-resolution video is never held in memory at full size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
FRAME_FOLDER_FPS = 24.0  # DAVIS frame folders carry no rate; they were shot at 24 fps


class VideoError(Exception):
    """A video that cannot be read; the message names the file and the reason."""


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


def frame_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith("."))


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise VideoError(f"{path}: not a readable image (corrupt or not an image); replace or remove it")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def probe(path: str | Path, exact: bool = True) -> VideoInfo:
    """Open ``path`` and decode it to check that it really is a video.

    With ``exact`` every frame is decoded and counted (container frame counts
    are often wrong); otherwise only the first frame is decoded and the
    container's count is trusted. Raises :class:`VideoError` with the reason.
    """
    path = Path(path)
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise VideoError(f"{path}: folder holds no frames ({', '.join(FRAME_SUFFIXES)})")
        first = _read_image(files[0])
        if exact:
            for _ in read_frames(path):
                pass
        return VideoInfo(len(files), FRAME_FOLDER_FPS, first.shape[1], first.shape[0])
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: not a readable video (no decoder could open it)")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError(f"{path}: not a readable video (no frame could be decoded)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        height, width = frame.shape[:2]
        if exact:
            count = 1
            while cap.grab():
                count += 1
        else:
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 1)
    finally:
        cap.release()
    if not 0 < fps < 1000:
        fps = FRAME_FOLDER_FPS
    return VideoInfo(count, fps, width, height)


def resize_max_side(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """Shrink ``frame`` so its longer side is at most ``max_side`` (never enlarge)."""
    if not max_side:
        return frame
    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return frame
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def read_frames(
    path: str | Path,
    start: int = 0,
    stop: int | None = None,
    step: int = 1,
    max_side: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, rgb_frame)`` for frames ``start, start+step, ... < stop``.

    Frames are optionally shrunk to ``max_side``. A frame folder whose images
    differ in size raises :class:`VideoError` naming the odd frame.
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    path = Path(path)
    if path.is_dir():
        files = frame_files(path)
        first_shape = None
        for index in range(start, len(files) if stop is None else min(stop, len(files)), step):
            frame = _read_image(files[index])
            if first_shape is None:
                first_shape = frame.shape
            elif frame.shape != first_shape:
                raise VideoError(
                    f"{files[index]}: frame is {frame.shape[1]}x{frame.shape[0]} but the video's first frame is "
                    f"{first_shape[1]}x{first_shape[0]}; resize or remove the odd frame"
                )
            yield index, resize_max_side(frame, max_side)
        return
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"{path}: not a readable video (no decoder could open it)")
    try:
        index = 0
        while stop is None or index < stop:
            if index < start or (index - start) % step:
                if not cap.grab():  # skip without the colour conversion
                    break
            else:
                ok, frame = cap.read()
                if not ok:
                    break
                yield index, resize_max_side(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), max_side)
            index += 1
    finally:
        cap.release()


def write_video(path: str | Path, frames: Iterator[np.ndarray] | np.ndarray, fps: float) -> None:
    """Write RGB frames as an MPEG-4 (mp4v) file, atomically."""
    from .formats import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        writer = None
        try:
            for frame in frames:
                if writer is None:
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    if not writer.isOpened():
                        raise VideoError(f"{path}: OpenCV could not open an mp4v writer")
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            if writer is not None:
                writer.release()
        if writer is None:
            raise VideoError(f"{path}: no frames to write")


def read_clip(
    path: str | Path, first: int, last: int, step: int = 1, max_side: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode frames ``first..last`` (inclusive) every ``step`` of one shot.

    Returns (frames (T, H, W, 3) uint8 RGB shrunk to ``max_side``, indices (T,)
    int64). Only this shot is held, at the working size. Raises
    :class:`VideoError` if the video ends before ``last``.
    """
    indices, frames = [], []
    for index, frame in read_frames(path, start=first, stop=last + 1, step=step, max_side=max_side):
        indices.append(index)
        frames.append(frame)
    expected = len(range(first, last + 1, step))
    if len(frames) != expected:
        raise VideoError(f"{path}: expected {expected} frames in {first}..{last} (step {step}), decoded {len(frames)}")
    return np.stack(frames), np.asarray(indices, np.int64)
