"""Detection tables (a dataset as the proposals stage recorded it) and proposal shards."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from motionmasks.atomic import atomic_path
from motionmasks.detection import DetectionImage
from motionmasks.formats.files import read_table, write_table

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
