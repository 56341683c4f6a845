"""Every on-disk format of the pipeline, read and written in this package only.

One module per format (``files``, ``names``, ``masks``, ``maps``, ``training``,
``shots``, ``detection``), so that each DVC stage depends on the modules that
shape its outputs and nothing else: a change to the proposal shards re-runs
``proposals`` and ``transfer``, not the motion stages. This file only gathers
them under one import.

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

from motionmasks.formats.detection import (
    DETECTION_COLUMNS,
    read_detection_table,
    read_proposal_shard,
    write_detection_table,
    write_proposal_shard,
)
from motionmasks.formats.files import json_default, read_json, read_table, write_json, write_table
from motionmasks.formats.maps import MapShard, quantise, read_map_shard, write_map_shard
from motionmasks.formats.masks import mask_at_size, read_masks, write_masks
from motionmasks.formats.names import safe_name
from motionmasks.formats.shots import (
    SHOT_RECORD_COLUMNS,
    SHOT_STATUSES,
    ShotRecord,
    read_shot_records,
    write_shot_records,
)
from motionmasks.formats.training import TrainingShard, read_training_shard, write_training_shard

__all__ = [
    "DETECTION_COLUMNS",
    "SHOT_RECORD_COLUMNS",
    "SHOT_STATUSES",
    "MapShard",
    "ShotRecord",
    "TrainingShard",
    "json_default",
    "mask_at_size",
    "quantise",
    "read_detection_table",
    "read_json",
    "read_map_shard",
    "read_masks",
    "read_proposal_shard",
    "read_shot_records",
    "read_table",
    "read_training_shard",
    "safe_name",
    "write_detection_table",
    "write_json",
    "write_map_shard",
    "write_masks",
    "write_proposal_shard",
    "write_shot_records",
    "write_table",
    "write_training_shard",
]
