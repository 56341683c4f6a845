"""Training shards: the prune stage's sampled frames of one video with their soft masks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from motionmasks.atomic import atomic_path


@dataclass
class TrainingShard:
    """Training frames of one video with their soft masks (see the module docstring)."""

    video: str
    images: np.ndarray  # (N, h, w, 3) uint8 RGB
    masks: np.ndarray  # (N, h, w) uint8, 0-255
    frames: np.ndarray  # (N,) int64 frame index in the video
    shots: np.ndarray  # (N,) int64 shot number


def write_training_shard(path: str | os.PathLike, shard: TrainingShard) -> None:
    n = len(shard.images)
    if shard.images.ndim != 4 or shard.images.shape[3] != 3 or shard.images.dtype != np.uint8:
        raise ValueError(f"images must be (N, h, w, 3) uint8, got {shard.images.shape} {shard.images.dtype}")
    if shard.masks.shape != shard.images.shape[:3] or shard.masks.dtype != np.uint8:
        raise ValueError(f"masks {shard.masks.shape} {shard.masks.dtype} do not match images {shard.images.shape}")
    if len(shard.frames) != n or len(shard.shots) != n:
        raise ValueError(f"frames ({len(shard.frames)}) and shots ({len(shard.shots)}) must have {n} entries")
    with atomic_path(path) as tmp:
        np.savez(
            tmp,
            images=shard.images,
            masks=shard.masks,
            frames=np.asarray(shard.frames, np.int64),
            shots=np.asarray(shard.shots, np.int64),
            video=np.array(shard.video),
        )


def read_training_shard(path: str | os.PathLike) -> TrainingShard:
    with np.load(path) as npz:
        return TrainingShard(
            video=str(npz["video"]), images=npz["images"], masks=npz["masks"], frames=npz["frames"], shots=npz["shots"]
        )
