"""The mask ConvNet on frames: the input transform training and prediction
share, and single-frame prediction (no motion used) at a frame's own size.

Training sees jittered crops of the frame, squashed to 227 x 227; prediction
sees the whole frame, squashed the same way, and the 56 x 56 map is resized
back to the frame (bilinear), so its masks have the motion segmenter's format.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from models.alexnet import INPUT_SIZE

# Per-channel scaling of 0-255 RGB to roughly zero mean, unit spread (fixed constants, nothing learned)
_MEAN = np.array([123.7, 116.3, 103.5], np.float32)
_STD = np.array([58.4, 57.1, 57.4], np.float32)


def to_input(images: np.ndarray) -> torch.Tensor:
    """(B, 227, 227, 3) uint8 RGB -> (B, 3, 227, 227) float32 network input."""
    scaled = (np.asarray(images, np.float32) - _MEAN) / _STD
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(0, 3, 1, 2)))


def squash(frame: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """A whole frame (or crop) resized to size x size, as the network sees it."""
    interpolation = cv2.INTER_AREA if min(frame.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(frame, (size, size), interpolation=interpolation)


def predict_logits(model: torch.nn.Module, frames: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """(B, 227, 227, 3) uint8 squashed frames -> (B, s, s) float32 foreground probabilities."""
    with torch.inference_mode():
        logits = model(to_input(frames).to(device))
        return torch.sigmoid(logits.float()).cpu().numpy()


def calibrated(probability: np.ndarray, threshold: float) -> np.ndarray:
    """Probabilities remapped (piecewise linear, monotone) so that ``threshold`` lands on 0.5.

    The train stage picks the threshold on its held-out videos; stored this
    way, the ConvNet's masks are thresholded at 0.5 like the motion segmenter's.
    """
    if threshold == 0.5:
        return probability
    low = 0.5 * probability / threshold
    high = 0.5 + 0.5 * (probability - threshold) / (1.0 - threshold)
    return np.where(probability < threshold, low, high).astype(np.float32)


def predict_masks(
    model: torch.nn.Module,
    frames: Iterable[np.ndarray],
    *,
    threshold: float = 0.5,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
) -> Iterator[np.ndarray]:
    """8-bit soft masks (0-255) of each RGB frame at its own size, from that frame alone.

    ``threshold``: the checkpoint's calibrated threshold (its ``info["threshold"]``), mapped to 0.5.
    """
    model.eval()
    batch: list[np.ndarray] = []
    sizes: list[tuple[int, int]] = []

    def flush() -> Iterator[np.ndarray]:
        probabilities = predict_logits(model, np.stack(batch), device)
        for probability, (width, height) in zip(probabilities, sizes):
            soft = cv2.resize(calibrated(probability, threshold), (width, height), interpolation=cv2.INTER_LINEAR)
            yield np.clip(np.rint(soft * 255.0), 0, 255).astype(np.uint8)
        batch.clear()
        sizes.clear()

    for frame in frames:
        batch.append(squash(frame))
        sizes.append((frame.shape[1], frame.shape[0]))
        if len(batch) == batch_size:
            yield from flush()
    if batch:
        yield from flush()


def centred_prior(width: int, height: int, axes: tuple[float, float] = (0.3, 0.4)) -> np.ndarray:
    """The baseline a single-frame student must beat: one fixed centred ellipse (8-bit, 0 or 255).

    ``axes``: the semi-axes as fractions of the frame's width and height.
    """
    mask = np.zeros((height, width), np.uint8)
    centre = (round((width - 1) / 2), round((height - 1) / 2))
    cv2.ellipse(mask, centre, (round(axes[0] * width), round(axes[1] * height)), 0, 0, 360, 255, -1)
    return mask


def write_convnet_mask_folder(
    source: str | os.PathLike,
    target: str | os.PathLike,
    checkpoint: str | os.PathLike,
    *,
    max_pixels: int | None = None,
    progress: Callable[[int], Any] | None = None,
) -> int:
    """The ConvNet's single-frame masks of every frame of ``source``, written like ``write_mask_folder``'s.

    Same names, size and 8-bit format as the motion segmenter's PNGs, so
    ``motionmasks score`` compares the two; no motion is used. Returns the
    number of frames written.
    """
    from models.checkpoint import load_masknet
    from motionmasks.atomic import atomic_dir
    from motionmasks.segment import mask_stems
    from motionmasks.video import probe, read_frames

    source, target = Path(source), Path(target)
    probe(source, exact=False, max_pixels=max_pixels)  # a bad or oversized input is named before any work
    model, info = load_masknet(checkpoint)
    stem = mask_stems(source)
    frames = read_frames(source)
    written = 0
    with atomic_dir(target) as tmp:
        indices: list[int] = []

        def pictures() -> Iterator[np.ndarray]:
            for index, frame in frames:
                indices.append(index)
                yield frame

        for mask in predict_masks(model, pictures(), threshold=info.get("threshold", 0.5)):
            png = f"{stem(indices[written])}.png"
            if not cv2.imwrite(str(tmp / png), mask):
                raise OSError(f"could not write {target / png}")
            written += 1
            if progress is not None:
                progress(1)
    return written
