"""Every on-disk format of the pipeline, read and written in one place.

All writers are atomic (:mod:`motionmasks.atomic`): they write a temporary
file beside the target and ``os.replace`` it into place, so a killed run never
leaves a half-written file that a re-run (or DVC) would trust.

Formats
-------
tables (``.parquet`` or ``.csv``)
    pandas DataFrames. Machine-read indexes are Parquet; reports meant for a
    person (failures) are CSV.
JSON (``.json``)
    metrics and small records, pretty-printed with sorted keys.
mask stacks (``.npz``)
    ``masks``: uint8 array (T, H, W), one binary (0/1) mask per frame;
    ``frames``: int64 array (T,), the frame index of each mask in its video.
map shards (``.npz``)
    soft maps in [0, 1] quantised to uint8 (value = round(255 * p)) at the
    working size: ``maps`` (T, h, w) uint8, ``frames`` (T,) int64 video frame
    indices, plus per-frame arrays (``extra_shot``, ``extra_part``,
    ``extra_reliable``) and string metadata in ``meta`` (a JSON string). One
    shard per video, never a file per frame.
training shards (``.npz``, uncompressed: pixels barely compress and training reads them often)
    the prune stage's sampled frames of one video, decoded once at the working
    size: ``images`` (N, h, w, 3) uint8 RGB, ``masks`` (N, h, w) uint8 soft
    masks (0-255), ``frames``, ``shots`` (N,) int64, and ``video`` (the id).
    Training only reads these (:func:`read_training_shard`).
checkpoints (``.pt``)
    the networks' weights and how to rebuild them: :mod:`models.checkpoint`
    (kept beside the networks so this module needs no torch).
shot records (``.parquet``)
    the shots stage's table, one :class:`ShotRecord` per part of a shot:
    written once (:func:`write_shot_records`), read by every later stage
    (:func:`read_shot_records`) instead of re-deriving sources, frame ranges
    or sizes.
detection tables (``.parquet``)
    the proposals stage's record of a detection dataset, one
    :class:`~motionmasks.detection.DetectionImage` per row (``image``,
    ``path``, ``width``, ``height``, ``boxes`` as a flat x1,y1,x2,y2 list,
    ``classes``, ``difficult``) plus ``shard``, the proposal shard holding
    its proposals: :func:`write_detection_table`, :func:`read_detection_table`.
proposal shards (``.npz``, one per batch of images)
    ``images`` (M,) image ids, ``counts`` (M,) int64, ``boxes`` (sum counts, 4)
    float32 ``x1, y1, x2, y2`` pixels of the image as stored, each image's
    proposals in the proposal method's rank order.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from motionmasks.atomic import atomic_path
from motionmasks.detection import DetectionImage

_SAFE_CHAR = re.compile(r"[^A-Za-z0-9._-]")
_MAX_NAME = 120  # well under the 255-byte file-name limit, with room for suffixes


def safe_name(video_id: str) -> str:
    """File-system name for ``video_id`` that cannot leave the output folder.

    Keeps ``[A-Za-z0-9._-]``, replaces every other character by ``_`` and a
    leading dot by ``_`` (so no ``..`` and no hidden files). When anything was
    changed (or the id was too long) a dash and the first 8 hex digits of the
    id's SHA-256 are appended, so two different ids never share a name.

    Examples
    --------
    >>> safe_name("bear-01")
    'bear-01'
    >>> safe_name("../../etc/passwd")
    '_._.._etc_passwd-3754d6cb'
    """
    if not isinstance(video_id, str) or not video_id:
        raise ValueError(f"video id must be a non-empty string, got {video_id!r}")
    name = _SAFE_CHAR.sub("_", video_id)
    if name.startswith("."):
        name = "_" + name[1:]
    if name == video_id and len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(video_id.encode("utf-8")).hexdigest()[:8]
    return f"{name[:_MAX_NAME]}-{digest}"


def mask_at_size(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """A stored 8-bit working-size mask at a frame's size (bilinear, stays 8-bit).

    The one way a shard's mask becomes a full-size mask: ``motionmasks
    segment``'s PNGs and the evaluate stage's scores both come from it.
    """
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            raise ValueError(f"{path}: tables are .parquet or .csv")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False, dtype=str) if path.stat().st_size else pd.DataFrame()
    raise ValueError(f"{path}: tables are .parquet or .csv")


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


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
            meta=np.array(json.dumps(shard.meta, sort_keys=True, default=_json_default)),
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


SHOT_STATUSES = ("ok", "too_short")


@dataclass(frozen=True)
class ShotRecord:
    """One part of one shot: the unit every stage after ``shots`` works on.

    A shot longer than ``shots.max_shot`` frames is cut into near-equal
    contiguous parts (``part`` 0, 1, ...), each segmented on its own; shorter
    shots have one part. Every frame of a usable shot is in exactly one part.

    Attributes
    ----------
    video : str
        Manifest id.
    source : str
        The fetched video file or frame folder (as the download stage wrote it).
    shot, part : int
        Shot number in the video (0-based) and part number in the shot.
    first, last : int
        Inclusive frame indices of this part in the video.
    fps : float
    width, height : int
        The video's frame size.
    work_width, work_height : int
        The working size every frame of the part is shrunk to (longer side
        ``shots.working_max_side``); saliency and masks are stored at it.
    status : str
        ``"ok"``, or ``"too_short"`` for shots under ``shots.min_shot`` frames
        (listed, not segmented by the pipeline).
    """

    video: str
    source: str
    shot: int
    part: int
    first: int
    last: int
    fps: float
    width: int
    height: int
    work_width: int
    work_height: int
    status: str

    @property
    def frames(self) -> int:
        return self.last - self.first + 1

    @property
    def work_size(self) -> tuple[int, int]:
        """(width, height), OpenCV's order."""
        return self.work_width, self.work_height


SHOT_RECORD_COLUMNS = [f.name for f in fields(ShotRecord)]


def write_shot_records(path: str | os.PathLike, records: list[ShotRecord]) -> None:
    bad = sorted({r.status for r in records} - set(SHOT_STATUSES))
    if bad:
        raise ValueError(f"unknown shot status(es) {bad}; allowed: {SHOT_STATUSES}")
    write_table(pd.DataFrame([asdict(r) for r in records], columns=SHOT_RECORD_COLUMNS), path)


def read_shot_records(path: str | os.PathLike, *, usable_only: bool = False) -> list[ShotRecord]:
    """The shots stage's records, in order; with ``usable_only`` just the ``"ok"`` ones."""
    table = read_table(path)
    missing = [c for c in SHOT_RECORD_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a shot table (missing columns {missing}); re-run the shots stage")
    types = {f.name: str(f.type) for f in fields(ShotRecord)}  # annotations are strings here
    casts: dict[str, type] = {"str": str, "int": int, "float": float}
    records = [
        ShotRecord(**{k: casts[types[k]](row[k]) for k in SHOT_RECORD_COLUMNS})
        for row in table[SHOT_RECORD_COLUMNS].to_dict("records")
    ]
    return [r for r in records if r.status == "ok"] if usable_only else records


DETECTION_COLUMNS = ["image", "path", "width", "height", "boxes", "classes", "difficult", "shard"]


def write_detection_table(path: str | os.PathLike, images: list[DetectionImage], shards: list[str]) -> None:
    rows = [
        {
            "image": i.image,
            "path": i.path,
            "width": i.width,
            "height": i.height,
            "boxes": i.boxes.reshape(-1).tolist(),
            "classes": list(i.classes),
            "difficult": i.difficult.tolist(),
            "shard": shard,
        }
        for i, shard in zip(images, shards, strict=True)
    ]
    write_table(pd.DataFrame(rows, columns=DETECTION_COLUMNS), path)


def read_detection_table(path: str | os.PathLike) -> tuple[list[DetectionImage], list[str]]:
    """(images, the proposal shard of each) as the proposals stage wrote them."""
    table = read_table(path)
    missing = [c for c in DETECTION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a detection table (missing columns {missing}); re-run the proposals stage")
    images = [
        DetectionImage(
            image=str(row["image"]),
            path=str(row["path"]),
            width=int(row["width"]),
            height=int(row["height"]),
            boxes=np.asarray(row["boxes"], np.float32).reshape(-1, 4),
            classes=tuple(row["classes"]),
            difficult=np.asarray(row["difficult"], bool),
        )
        for row in table.to_dict("records")
    ]
    return images, [str(s) for s in table["shard"]]


def write_proposal_shard(path: str | os.PathLike, proposals: dict[str, np.ndarray]) -> None:
    """``{image id: (K, 4) boxes}`` in one shard."""
    ids = list(proposals)
    boxes = [np.asarray(proposals[i], np.float32).reshape(-1, 4) for i in ids]
    with atomic_path(path) as tmp:
        np.savez(
            tmp,
            images=np.asarray(ids, dtype=str),
            counts=np.asarray([len(b) for b in boxes], np.int64),
            boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32),
        )


def read_proposal_shard(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        ids, counts, boxes = npz["images"], npz["counts"], npz["boxes"]
    starts = np.concatenate([[0], np.cumsum(counts)])
    return {str(i): boxes[starts[k] : starts[k + 1]] for k, i in enumerate(ids)}
