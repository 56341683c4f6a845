"""Binary mask stacks, and the one way a stored working-size mask becomes a full-size one."""

from __future__ import annotations

import os

import cv2
import numpy as np

from motionmasks.atomic import atomic_path


def mask_at_size(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """A stored 8-bit working-size mask at a frame's size (bilinear, stays 8-bit).

    The one way a shard's mask becomes a full-size mask: ``motionmasks
    segment``'s PNGs and the evaluate stage's scores both come from it.
    """
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)


def write_masks(path: str | os.PathLike, masks: np.ndarray, frames: np.ndarray | None = None) -> None:
    """Write a (T, H, W) stack of binary masks (any dtype; nonzero = foreground)."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (T, H, W), got shape {masks.shape}")
    if frames is None:
        frames = np.arange(len(masks))
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, masks=(masks != 0).astype(np.uint8), frames=np.asarray(frames, np.int64))


def read_masks(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Return (masks uint8 (T, H, W) in {0, 1}, frames int64 (T,))."""
    with np.load(path) as npz:
        return npz["masks"], npz["frames"]
