"""Shot records: the shots stage's table, written once and read by every later stage."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

import pandas as pd

from motionmasks.formats.files import read_table, write_table

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
