"""Reading videos: a video file (anything OpenCV's FFmpeg backend decodes) or a
folder of frames (``00000.jpg``, ``00001.jpg``, ... as in DAVIS).

Frames come out as RGB uint8 arrays (H, W, 3), streamed one at a time so a long
high-resolution video is never held in memory at full size.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
FRAME_FOLDER_FPS = 24.0  # DAVIS frame folders carry no rate; they were shot at 24 fps
# 8K UHD (7680x4320) is 33.2 Mpx; a 16000x16000 PNG (256 Mpx, 768 MB decoded) is refused
# from its header before any pixel is decoded. download.max_frame_pixels overrides it.
DEFAULT_MAX_FRAME_PIXELS = 36_000_000


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
    """The frame images of a frame folder, in order of their names.

    Only files count (a sub-folder named ``x.jpg`` is not a frame); hidden
    names are skipped. Two files for one frame (``00004.jpg`` and
    ``00004.png``) make the order ambiguous and raise :class:`VideoError`
    naming both, instead of silently giving one frame too many.
    """
    folder = Path(folder)
    files = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    by_stem: dict[str, list[str]] = {}
    for p in files:
        by_stem.setdefault(p.stem.lower(), []).append(p.name)
    clashes = [names for names in by_stem.values() if len(names) > 1]
    if clashes:
        listed = "; ".join(" and ".join(names) for names in clashes[:5])
        more = f" (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise VideoError(f"{folder}: several files for one frame: {listed}{more}; keep one file per frame number")
    return files


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file from its header, without decoding its pixels."""
    import imagesize  # reads headers only; Pillow would refuse (not measure) very large ones

    try:
        width, height = imagesize.get(str(path))
    except (OSError, ValueError, struct.error):
        width = height = -1
    if width <= 0 or height <= 0:
        raise VideoError(f"{path}: not a readable image (corrupt or not an image); replace or remove it")
    return int(width), int(height)


def check_frame_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise VideoError(
            f"{path}: frame is {width}x{height} ({width * height:,} pixels), over the limit of {max_pixels:,} "
            "pixels per frame; shrink the video or raise download.max_frame_pixels"
        )


_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
_JPEG_SUFFIXES = (".jpg", ".jpeg")


def _jpeg_reduction(path: Path, size: tuple[int, int], max_side: int | None) -> int:
    """The largest JPEG decode reduction (1, 2, 4, 8) that still leaves the longer side at least ``max_side``.

    libjpeg scales while decoding (in the DCT), several times cheaper than a
    full decode followed by a shrink; other formats are always decoded whole.
    """
    if not max_side or path.suffix.lower() not in _JPEG_SUFFIXES:
        return 1
    longest = max(size)
    return next((f for f in (8, 4, 2) if -(-longest // f) >= max_side), 1)


def _read_image(path: Path, expected: tuple[int, int] | None = None, reduction: int = 1) -> np.ndarray:
    if expected is not None:  # check the header before decoding: an odd frame can be huge
        size = image_size(path)
        if size != expected:
            raise VideoError(
                f"{path}: frame is {size[0]}x{size[1]} but the video's first frame is "
                f"{expected[0]}x{expected[1]}; resize or remove the odd frame"
            )
    image = cv2.imread(str(path), _REDUCED[reduction])
    if image is None:
        raise VideoError(f"{path}: not a readable image (corrupt or not an image); replace or remove it")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def probe(path: str | Path, exact: bool = True, max_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS) -> VideoInfo:
    """Open ``path`` and decode it to check that it really is a video.

    With ``exact`` every frame is decoded and counted (container frame counts
    are often wrong); otherwise only the first frame is decoded and the
    container's count is trusted. Frames over ``max_pixels`` (None: no limit)
    are refused before anything is decoded; in a frame folder every file's
    header is checked, so an odd-sized frame is named here. Raises
    :class:`VideoError` with the reason.
    """
    path = Path(path)
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise VideoError(f"{path}: folder holds no frames ({', '.join(FRAME_SUFFIXES)})")
        width, height = image_size(files[0])
        check_frame_pixels(files[0], width, height, max_pixels)
        for file in files[1:]:
            size = image_size(file)
            if size != (width, height):
                raise VideoError(
                    f"{file}: frame is {size[0]}x{size[1]} but the video's first frame is "
                    f"{width}x{height}; resize or remove the odd frame"
                )
        _read_image(files[0])
        if exact:
            for _ in read_frames(path):
                pass
        return VideoInfo(len(files), FRAME_FOLDER_FPS, width, height)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: not a readable video (no decoder could open it)")
        check_frame_pixels(
            path, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), max_pixels
        )
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError(f"{path}: not a readable video (no frame could be decoded)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        height, width = frame.shape[:2]
        check_frame_pixels(path, width, height, max_pixels)
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


def fit_max_side(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) shrunk so the longer side is at most ``max_side``, aspect kept, never enlarged.

    The one size rule of the project: working sizes, flow sizes and shot
    analysis sizes all come from it.
    """
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_max_side(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """Shrink ``frame`` so its longer side is at most ``max_side`` (never enlarge)."""
    h, w = frame.shape[:2]
    size = fit_max_side(w, h, max_side)
    return frame if size == (w, h) else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def read_frames(
    path: str | Path,
    start: int = 0,
    stop: int | None = None,
    step: int = 1,
    max_side: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, rgb_frame)`` for frames ``start, start+step, ... < stop``.

    Frames are optionally shrunk to ``max_side`` (``fit_max_side``'s size);
    JPEG frames of a frame folder are then decoded at a reduced scale when
    that still leaves at least ``max_side``. A frame folder whose images
    differ in size raises :class:`VideoError` naming the odd frame.
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    path = Path(path)
    if path.is_dir():
        files = frame_files(path)
        indices = range(start, len(files) if stop is None else min(stop, len(files)), step)
        if not indices:
            return
        first_size = image_size(files[indices[0]])
        target = fit_max_side(*first_size, max_side)
        for index in indices:
            file = files[index]
            frame = _read_image(file, expected=first_size, reduction=_jpeg_reduction(file, first_size, max_side))
            if (frame.shape[1], frame.shape[0]) != target:
                frame = cv2.resize(frame, target, interpolation=cv2.INTER_AREA)
            yield index, frame
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
    from .atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        writer = None
        try:
            for frame in frames:
                if writer is None:
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
                    if not writer.isOpened():
                        raise VideoError(f"{path}: OpenCV could not open an mp4v writer")
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            if writer is not None:
                writer.release()
        if writer is None:
            raise VideoError(f"{path}: no frames to write")
