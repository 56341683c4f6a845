"""Paths as the stage process means them, on whatever worker runs a batch.

A stage runs in the project folder and hands its tasks paths relative to it
(so its records are the same in every clone). A Dask worker may have been
started anywhere: each task resolves those paths against the project folder
it is given (``root``) for reading and writing, and reports them back as it
was given them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from motionmasks.formats import ShotRecord


def under(root: str, path: str | Path) -> Path:
    """``path`` relative to the project folder ``root``; an absolute path stays as it is."""
    return Path(root) / path


def records_under(root: str, records: list[ShotRecord]) -> list[ShotRecord]:
    """The shot records with their sources resolved against ``root``, for decoding."""
    return [replace(record, source=str(under(root, record.source))) for record in records]
