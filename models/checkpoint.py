"""The one checkpoint format of the networks, saved and loaded only here.

A checkpoint is a ``torch.save``'d dict of plain types and tensors (loaded
with ``weights_only=True``, so a checkpoint can never run code)::

    {"format": "motionmasks-masknet/1",
     "config": MaskNet.config(),       # how to rebuild the network
     "state_dict": {...},              # MaskNet weights; the trunk's under "trunk."
     "info": {...}}                    # what produced it: epoch, held-out IoU, params

:func:`load_trunk` gives the AlexNet trunk alone (the transfer stage's
initialisation); :func:`load_masknet` the whole mask ConvNet.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from models.alexnet import AlexNetTrunk
from models.masknet import MaskNet

FORMAT = "motionmasks-masknet/1"


class CheckpointError(ValueError):
    """A file is not a motionmasks checkpoint, or not one this code can load."""


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` atomically, and byte for byte the same for the same content.

    Saved through a buffer: torch names the archive's inner folder after the
    file, and the temporary file's name is random.
    """
    from motionmasks.atomic import atomic_path

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def save_masknet(path: str | os.PathLike, model: MaskNet, info: dict[str, Any] | None = None) -> None:
    """Write ``model`` atomically (a temporary file beside ``path``, then a rename)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch({"format": FORMAT, "config": model.config(), "state_dict": state, "info": info or {}}, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols before refusing them
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:
        # torch's own message for a pickle it refuses is a page long and advises weights_only=False,
        # which would run whatever code the file holds: say what the file is not, briefly
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "weights_only" in reason or "Weights only" in reason:
            reason = "not a file written by torch.save of tensors (refused: loading it could run code)"
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {reason})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: not a motionmasks checkpoint (format {found!r}, expected {FORMAT!r})")
    return data


def load_masknet(path: str | os.PathLike) -> tuple[MaskNet, dict[str, Any]]:
    """The mask ConvNet of a checkpoint (in eval mode) and its ``info``."""
    data = read_checkpoint(path)
    try:
        model = MaskNet(**data["config"])
        model.load_state_dict(data["state_dict"])
    except (TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the network they describe: {exc}") from None
    return model.eval(), data.get("info", {})


def load_trunk(path: str | os.PathLike) -> AlexNetTrunk:
    """The AlexNet trunk (conv1-conv5, fc6, fc7) of a mask ConvNet checkpoint, for transfer."""
    model, _ = load_masknet(path)
    return model.trunk.requires_grad_(True)  # every layer trainable; the transfer chooses what to freeze
