"""Pruning and sampling (paper §4): which frames' motion masks are good enough
to teach the ConvNet, and which of those it sees.

A frame is removed by the first rule, in this order, that it fails:

``unreliable``
    the motion stage could not explain the camera there (its ``reliable`` flag).
``too_little_foreground`` / ``too_much_foreground``
    the foreground (soft mask >= ``threshold``) covers under ``min_foreground``
    or over ``max_foreground`` of the frame (paper: 10 % and 80 %).
``border``
    more than ``max_border_foreground`` of the pixels within ``border_width``
    of the frame's edge are foreground (paper: 10 % within 5 %): an object
    cut by the frame, or background leaking in.

Of the frames left, ``frames_per_shot`` are sampled per shot, evenly spread
over the shot (paper: 5-10 per shot). A shot (video) counts as removed by the
rule that removed its last remaining frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from motionmasks.formats import ShotRecord, TrainingShard, read_map_shard, write_training_shard
from motionmasks.segment import decode_parts

RULES = ("unreliable", "too_little_foreground", "too_much_foreground", "border")


def border_band(height: int, width: int, border_width: float) -> np.ndarray:
    """(h, w) bool: the pixels within ``border_width`` (a fraction of each side's length) of the edge."""
    rows = max(1, math.ceil(border_width * height)) if border_width > 0 else 0
    cols = max(1, math.ceil(border_width * width)) if border_width > 0 else 0
    band = np.zeros((height, width), bool)
    if rows:
        band[:rows] = band[-rows:] = True
    if cols:
        band[:, :cols] = band[:, -cols:] = True
    return band


def rule_failures(
    masks: np.ndarray,
    reliable: np.ndarray,
    *,
    threshold: float = 0.5,
    min_foreground: float = 0.1,
    max_foreground: float = 0.8,
    border_width: float = 0.05,
    max_border_foreground: float = 0.1,
    drop_unreliable: bool = True,
) -> dict[str, np.ndarray]:
    """Each rule's verdict on each frame: ``{rule: (T,) bool, True = the frame fails it}``.

    ``masks`` are 8-bit soft masks (T, h, w); ``reliable`` the motion stage's (T,) flags.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (T, h, w), got {masks.shape}")
    foreground = masks >= math.ceil(threshold * 255) if masks.dtype == np.uint8 else masks >= threshold
    t_count, height, width = masks.shape
    fraction = foreground.reshape(t_count, -1).mean(axis=1) if t_count else np.zeros(0)
    band = border_band(height, width, border_width)
    on_border = foreground[:, band].mean(axis=1) if band.any() and t_count else np.zeros(t_count)
    return {
        "unreliable": ~np.asarray(reliable, bool) if drop_unreliable else np.zeros(t_count, bool),
        "too_little_foreground": fraction < min_foreground,
        "too_much_foreground": fraction > max_foreground,
        "border": on_border > max_border_foreground,
    }


def sample_evenly(candidates: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` of ``candidates`` (sorted positions), spread evenly, first and last included."""
    candidates = np.asarray(candidates)
    if len(candidates) <= count:
        return candidates
    picks = np.unique(np.round(np.linspace(0, len(candidates) - 1, count)).astype(int))
    return candidates[picks]


@dataclass
class PruneOutcome:
    """What pruning did to one video: the positions (in its mask shard) it kept, and the counts."""

    sampled: np.ndarray  # positions in the shard's frame order
    frames: int
    shots: int
    removed_frames: dict[str, int] = field(default_factory=dict)
    removed_shots: dict[str, int] = field(default_factory=dict)
    removed_by: str = ""  # the rule that removed the whole video, if one did
    kept_frames: int = 0  # frames that passed every rule (before sampling)


def prune_frames(
    masks: np.ndarray, reliable: np.ndarray, shots: np.ndarray, *, frames_per_shot: int, **rules: Any
) -> PruneOutcome:
    """Apply the rules in order, then sample per shot. ``shots``: (T,) shot number of each frame."""
    shots = np.asarray(shots)
    failures = rule_failures(masks, reliable, **rules)
    alive = np.ones(len(masks), bool)
    shot_ids = np.unique(shots)
    outcome = PruneOutcome(sampled=np.zeros(0, np.int64), frames=len(masks), shots=len(shot_ids))
    shots_alive = {int(s) for s in shot_ids}
    for rule in RULES:
        removed = alive & failures[rule]
        alive &= ~removed
        outcome.removed_frames[rule] = int(removed.sum())
        emptied = {s for s in shots_alive if not alive[shots == s].any()}
        outcome.removed_shots[rule] = len(emptied)
        shots_alive -= emptied
        if len(masks) and not outcome.removed_by and not alive.any():
            outcome.removed_by = rule
    outcome.kept_frames = int(alive.sum())
    picks = [sample_evenly(np.flatnonzero(alive & (shots == s)), frames_per_shot) for s in sorted(shots_alive)]
    outcome.sampled = np.concatenate(picks).astype(np.int64) if picks else np.zeros(0, np.int64)
    return outcome


def prune_video(
    video: str, records: list[ShotRecord], consensus_shard: str | Path, out_path: str | Path, prune: dict[str, Any]
) -> PruneOutcome:
    """Prune and sample one video's consensus masks; write its training shard (if any frame is left).

    The video is decoded once, in order, at its records' working size (the
    masks' size), and only the sampled frames are kept.
    """
    shard = read_map_shard(consensus_shard, quantised=True)
    reliable = shard.extras.get("reliable", np.ones(len(shard.maps), bool))
    outcome = prune_frames(shard.maps, reliable, shard.extras["shot"], **prune)
    if not len(outcome.sampled):
        return outcome
    wanted = {int(shard.frames[i]): int(i) for i in outcome.sampled}
    images: dict[int, np.ndarray] = {}
    for record, clip in decode_parts([r for r in records if any(r.first <= f <= r.last for f in wanted)]):
        for frame in range(record.first, record.last + 1):
            if frame in wanted:
                images[frame] = clip[frame - record.first]
    missing = sorted(set(wanted) - set(images))
    if missing:
        raise ValueError(f"frames {missing[:5]} of the mask shard are in no shot record; re-run from the shots stage")
    order = sorted(wanted)
    positions = [wanted[f] for f in order]
    write_training_shard(
        out_path,
        TrainingShard(
            video=video,
            images=np.stack([images[f] for f in order]),
            masks=shard.maps[positions],
            frames=np.asarray(order, np.int64),
            shots=shard.extras["shot"][positions].astype(np.int64),
        ),
    )
    return outcome


DEGRADATIONS = ("none", "erode", "dilate", "truncate")


def degrade_mask(mask: np.ndarray, kind: str, amount: float, side: str = "left") -> np.ndarray:
    """A true mask made worse, for the paper's robustness experiment (§4).

    ``erode`` / ``dilate``: with a square kernel of ``amount`` pixels.
    ``truncate``: zero a strip covering ``amount`` (a fraction, 0-1) of the
    foreground's bounding box from ``side`` (left, right, top, bottom).
    ``none`` returns the mask as it is. Works on 8-bit masks (0-255).
    """
    if kind == "none":
        return mask
    if kind in ("erode", "dilate"):
        size = int(amount)
        if size < 1:
            raise ValueError(f"{kind} needs a kernel of at least 1 pixel, got {amount}")
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
        return (cv2.erode if kind == "erode" else cv2.dilate)(mask, kernel)
    if kind != "truncate":
        raise ValueError(f"unknown degradation {kind!r}; one of {', '.join(DEGRADATIONS)}")
    if not 0 <= amount <= 1:
        raise ValueError(f"truncate takes a fraction of the box in [0, 1], got {amount}")
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return mask
    out = mask.copy()
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    cut_x, cut_y = round(amount * (x1 - x0)), round(amount * (y1 - y0))
    strips = {
        "left": (slice(None), slice(x0, x0 + cut_x)),
        "right": (slice(None), slice(x1 - cut_x, x1)),
        "top": (slice(y0, y0 + cut_y), slice(None)),
        "bottom": (slice(y1 - cut_y, y1), slice(None)),
    }
    if side not in strips:
        raise ValueError(f"side must be one of {', '.join(strips)}, got {side!r}")
    out[strips[side]] = 0
    return out
