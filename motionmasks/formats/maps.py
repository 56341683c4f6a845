"""Map shards: one video's soft maps (motion saliency, consensus masks), quantised to 8 bits."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from motionmasks.atomic import atomic_path
from motionmasks.formats.files import json_default


@dataclass
class MapShard:
    """Soft maps of one shot: ``maps`` float32 (T, h, w) in [0, 1]."""

    maps: np.ndarray
    frames: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def quantise(maps: np.ndarray) -> np.ndarray:
    """Soft maps in [0, 1] as uint8 0-255 (round half to even); uint8 input is returned as it is."""
    maps = np.asarray(maps)
    if maps.dtype == np.uint8:
        return maps
    return np.clip(np.rint(maps.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


def write_map_shard(path: str | os.PathLike, shard: MapShard) -> None:
    if shard.maps.ndim != 3 or len(shard.maps) != len(shard.frames):
        raise ValueError(f"maps {shard.maps.shape} and frames {np.shape(shard.frames)} do not match")
    arrays = {f"extra_{k}": np.asarray(v) for k, v in shard.extras.items()}
    with atomic_path(path) as tmp:
        arrays.update(
            maps=quantise(shard.maps),
            frames=np.asarray(shard.frames, np.int64),
            meta=np.array(json.dumps(shard.meta, sort_keys=True, default=json_default)),
        )
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]  # the stub reads **arrays as its keywords


def read_map_shard(path: str | os.PathLike, *, quantised: bool = False) -> MapShard:
    """A map shard; ``maps`` as float32 in [0, 1], or as stored (uint8 0-255) with ``quantised``."""
    with np.load(path) as npz:
        extras = {k[len("extra_") :]: npz[k] for k in npz.files if k.startswith("extra_")}
        return MapShard(
            maps=npz["maps"] if quantised else npz["maps"].astype(np.float32) / 255.0,
            frames=npz["frames"],
            extras=extras,
            meta=json.loads(str(npz["meta"])),
        )
