"""Training the mask ConvNet on the prune stage's shards (paper §5).

Each sample is a crop of a training frame, jittered in position and scale
(its side ``crop_scale`` x the frame's, placed anywhere that keeps the
object's centre inside) and maybe flipped, squashed to 227 x 227; its target
is the soft mask cropped the same way, resized to s x s (56) and made a trimap:
< ``negative_below`` background, > ``positive_above`` foreground, in between
ignored. The loss is the logistic loss summed over the s x s locations,
averaged over the batch.

Runs on the CPU, on a CUDA GPU (bfloat16 autocast), and on several processes
under ``torchrun`` (DDP; gloo on CPUs, NCCL on GPUs). Deterministic for a
seed: every sample's jitter comes from (seed, epoch, index) and the shuffle
from (seed, epoch), so a run resumed from its last checkpoint gives the
same weights as one never stopped. The resume state (weights, optimizer,
history) is written atomically after every epoch; the model of the epoch with
the best held-out IoU is the result.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

import models
from models.alexnet import INPUT_SIZE
from models.checkpoint import save_masknet, save_torch
from models.masknet import MaskNet
from motionmasks.convnet import predict_logits, squash, to_input
from motionmasks.formats import read_training_shard
from motionmasks.params import TrainParams

STATE_FILE = "state.pt"


class TrainingError(RuntimeError):
    """Training cannot start: no frames, every video held out, or no place to log."""


BEST_FILE = "best.pt"


@dataclass
class Frames:
    """Training frames in memory: images (N, h, w, 3) uint8 RGB, masks (N, h, w) uint8, video of each."""

    images: np.ndarray
    masks: np.ndarray
    videos: np.ndarray

    def subset(self, keep: np.ndarray) -> Frames:
        return Frames(self.images[keep], self.masks[keep], self.videos[keep])


def load_frames(shard_paths: Sequence[str | os.PathLike]) -> Frames:
    """All shards' frames, in the order given. Frames of different sizes are resized to the first shard's."""
    images, masks, videos = [], [], []
    size: tuple[int, int] | None = None
    for path in shard_paths:
        shard = read_training_shard(path)
        h, w = shard.masks.shape[1:]
        size = size or (w, h)
        for image, mask in zip(shard.images, shard.masks):
            if (w, h) != size:
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                mask = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
            images.append(image)
            masks.append(mask)
            videos.append(shard.video)
    if not images:
        raise TrainingError("no training frames: the prune stage kept none (see metrics/prune.json)")
    return Frames(np.stack(images), np.stack(masks), np.array(videos))


def held_out_videos(videos: Sequence[str], fraction: float, seed: int) -> set[str]:
    """``fraction`` of the videos (at least one when there are two or more), chosen by a seeded hash of each id.

    A video's fate depends on its id and the seed only, so adding videos never moves one between splits
    except through the count.
    """
    unique = sorted(set(videos))
    count = round(fraction * len(unique))
    if fraction > 0 and len(unique) >= 2:
        count = min(max(count, 1), len(unique) - 1)
    ranked = sorted(unique, key=lambda v: hashlib.sha256(f"{seed}:{v}".encode()).hexdigest())
    return set(ranked[:count])


def object_centre(mask: np.ndarray, threshold: int = 128) -> tuple[float, float]:
    """(x, y) centre of the mask's foreground box; the frame's centre when it has none."""
    ys, xs = np.nonzero(mask >= threshold)
    if not len(xs):
        return (mask.shape[1] - 1) / 2, (mask.shape[0] - 1) / 2
    return (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2


def jittered_crop(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, crop_scale: tuple[float, float], flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """A crop of the frame's aspect, side ``crop_scale`` x the frame's, anywhere that keeps the object centre in it."""
    height, width = mask.shape
    scale = rng.uniform(*crop_scale)
    cw, ch = max(1, round(scale * width)), max(1, round(scale * height))
    cx, cy = object_centre(mask)
    x_low, x_high = max(0, math.ceil(cx) - cw + 1), min(math.floor(cx), width - cw)
    y_low, y_high = max(0, math.ceil(cy) - ch + 1), min(math.floor(cy), height - ch)
    x0 = int(rng.integers(x_low, x_high + 1)) if x_high >= x_low else int(rng.integers(0, width - cw + 1))
    y0 = int(rng.integers(y_low, y_high + 1)) if y_high >= y_low else int(rng.integers(0, height - ch + 1))
    image, mask = image[y0 : y0 + ch, x0 : x0 + cw], mask[y0 : y0 + ch, x0 : x0 + cw]
    if flip and rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def trimap(mask: np.ndarray, size: int, negative_below: float, positive_above: float) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit soft mask at size x size as (target, weight): 1/1 foreground, 0/1 background, 0/0 ignored."""
    soft = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    positive, negative = soft > positive_above, soft < negative_below
    return positive.astype(np.float32), (positive | negative).astype(np.float32)


class MaskCrops(Dataset):
    """Jittered training samples; sample ``i`` of epoch ``e`` is the same whichever process draws it."""

    def __init__(self, frames: Frames, params: TrainParams) -> None:
        self.frames, self.params, self.epoch = frames, params, 0

    def __len__(self) -> int:
        return len(self.frames.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self.params
        rng = np.random.default_rng([p.seed, self.epoch, index])
        image, mask = jittered_crop(self.frames.images[index], self.frames.masks[index], rng, p.crop_scale, p.flip)
        target, weight = trimap(mask, p.output_size, p.negative_below, p.positive_above)
        return to_input(squash(image, INPUT_SIZE)[None])[0], torch.from_numpy(target), torch.from_numpy(weight)


def masked_logistic_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Logistic loss summed over the s x s locations that are not ignored, averaged over the batch."""
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    return (per_pixel * weight).sum(dim=(1, 2)).mean()


def held_out_ious(
    model: torch.nn.Module,
    frames: Frames,
    device: torch.device,
    thresholds: Sequence[float] = (0.5,),
    batch_size: int = 64,
) -> np.ndarray:
    """Mean over frames of IoU(prediction on the whole frame >= t, mask >= 0.5) for each t, at the stored size."""
    if not len(frames.images):
        return np.full(len(thresholds), np.nan)
    model.eval()
    scores = []
    height, width = frames.masks.shape[1:]
    for start in range(0, len(frames.images), batch_size):
        batch = frames.images[start : start + batch_size]
        probabilities = predict_logits(model, np.stack([squash(i) for i in batch]), device)
        for probability, mask in zip(probabilities, frames.masks[start : start + batch_size]):
            soft = cv2.resize(probability, (width, height), interpolation=cv2.INTER_LINEAR)
            truth = mask >= 128  # the mask's foreground at 0.5, as the prune rules count it
            row = []
            for threshold in thresholds:
                predicted = soft >= threshold
                union = np.logical_or(predicted, truth).sum()
                row.append(1.0 if union == 0 else np.logical_and(predicted, truth).sum() / union)
            scores.append(row)
    return np.mean(scores, axis=0)


def held_out_iou(model: torch.nn.Module, frames: Frames, device: torch.device, threshold: float = 0.5) -> float:
    return float(held_out_ious(model, frames, device, (threshold,))[0])


def calibrate_threshold(model: torch.nn.Module, frames: Frames, device: torch.device) -> tuple[float, float]:
    """The threshold on the ConvNet's output that best matches the held-out videos' masks, and the IoU there.

    Label-free (the masks are the motion segmenter's). Predictions are stored
    calibrated (see ``motionmasks.convnet.calibrated``), so every consumer keeps
    thresholding at 0.5.
    """
    thresholds = [round(0.05 * step, 2) for step in range(1, 20)]  # 0.05 ... 0.95
    ious = held_out_ious(model, frames, device, thresholds)
    best = int(np.argmax(ious))
    return thresholds[best], float(ious[best])


def training_code_digest() -> str:
    """The source of the networks and of this training loop: a state saved by other code is not resumed."""
    sources = sorted(Path(models.__file__).parent.glob("*.py")) + [Path(__file__)]
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def _fingerprint(params: TrainParams, shard_paths: Sequence[str | os.PathLike]) -> str:
    """What a resume state must match: every setting but ``epochs``, the training data and the code.

    More epochs with the same settings go on from the state (the learning rate is constant). New masks
    of the same frames (an upstream parameter changed) or a change to the networks or the loop (both
    re-run the stage under DVC) train from the start. The data is hashed by content: rewritten shards
    keep their names and, uncompressed, their sizes.
    """
    settings = params.model_dump(mode="json", exclude={"epochs"})
    data = []
    for path in shard_paths:
        with open(path, "rb") as stream:
            data.append((Path(path).name, hashlib.file_digest(stream, "sha256").hexdigest()))
    return hashlib.sha256(json.dumps([settings, data, training_code_digest()], sort_keys=True).encode()).hexdigest()


def _distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _optimizer(model: torch.nn.Module, p: TrainParams) -> torch.optim.Optimizer:
    parameters = [q for q in model.parameters() if q.requires_grad]
    if p.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=p.lr, weight_decay=p.weight_decay)
    return torch.optim.SGD(parameters, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)


def train(
    shard_paths: Sequence[str | os.PathLike],
    model_path: str | os.PathLike,
    state_dir: str | os.PathLike,
    params: TrainParams,
    *,
    live_dir: str | os.PathLike | None = None,
    loader_workers: int = 0,
    log: Callable[[str], Any] = print,
    on_epoch: Callable[[dict[str, Any]], Any] | None = None,
) -> dict[str, Any]:
    """Train the mask ConvNet; write the best epoch's model to ``model_path``; return the summary.

    ``state_dir`` keeps the resume state between runs: a run whose settings
    and data match it goes on from its last finished epoch. ``live_dir``
    receives the per-epoch metrics and plots (dvclive). ``on_epoch`` is told
    each epoch's metrics (the flow shows them in Prefect).
    """
    rank, world = _distributed()
    device = _device()
    torch.manual_seed(params.seed)
    frames = load_frames(shard_paths)
    held_out = held_out_videos(frames.videos.tolist(), params.val_fraction, params.seed)
    is_val = np.isin(frames.videos, sorted(held_out))
    train_frames, val_frames = frames.subset(~is_val), frames.subset(is_val)
    if not len(train_frames.images):
        raise TrainingError("every training video is held out; lower train.val_fraction")
    model = MaskNet(
        width=params.width,
        batch_norm=params.batch_norm,
        head=params.head,
        output_size=params.output_size,
        dropout=params.dropout,
    ).to(device)
    optimizer = _optimizer(model, params)
    state_dir = Path(state_dir)
    fingerprint = _fingerprint(params, shard_paths)
    history: list[dict[str, Any]] = []
    start_epoch, best_iou = 0, -1.0
    state_path = state_dir / STATE_FILE
    state = _read_state(state_path, log if rank == 0 else lambda _: None)
    if state is not None:
        if state.get("fingerprint") == fingerprint and state.get("epoch", 0) <= params.epochs:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_epoch, history, best_iou = state["epoch"], state["history"], state["best_iou"]
            if rank == 0:
                log(f"resuming from the checkpoint of epoch {start_epoch} in {state_path}")
        elif rank == 0:
            log(f"{state_path} is of other settings, data or code: training from the start")
    wrapped: torch.nn.Module = model
    if world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    dataset = MaskCrops(train_frames, params)
    sampler: DistributedSampler = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=params.seed
    )
    loader = DataLoader(
        dataset,
        batch_size=params.batch_size,
        sampler=sampler,
        num_workers=loader_workers,
        drop_last=len(dataset) // world >= params.batch_size,  # batch norm needs batches over one sample
        pin_memory=device.type == "cuda",
    )
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and params.mixed_precision
        else nullcontext()
    )
    live = _open_live(live_dir, history, params) if rank == 0 and live_dir else None
    if rank == 0:
        log(
            f"training on {len(train_frames.images)} frames of {len(set(train_frames.videos))} videos, "
            f"holding out {len(val_frames.images)} frames of {len(held_out)} videos; {device}, {world} process(es)"
        )
    for epoch in range(start_epoch, params.epochs):
        torch.manual_seed(params.seed * 100_003 + epoch)  # dropout: the same whether resumed or not
        dataset.epoch = epoch
        sampler.set_epoch(epoch)
        wrapped.train()
        total, count, started, last_report = 0.0, 0, time.perf_counter(), time.perf_counter()
        for step, (images, target, weight) in enumerate(loader, 1):
            images, target, weight = images.to(device), target.to(device), weight.to(device)
            with autocast:
                logits = wrapped(images)
            loss = masked_logistic_loss(logits, target, weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(images)
            count += len(images)
            if rank == 0 and time.perf_counter() - last_report > 30:
                rate = count * world / (time.perf_counter() - started)
                log(
                    f"epoch {epoch + 1}/{params.epochs} step {step}/{len(loader)} loss {total / count:.1f} {rate:.1f} images/s"
                )
                last_report = time.perf_counter()
        seconds = time.perf_counter() - started
        row = {
            "epoch": epoch + 1,
            "loss": total / max(count, 1),
            "images_per_second": count * world / seconds if seconds else 0.0,
        }
        if rank == 0:
            # early stopping on the held-out videos, each epoch at its own calibrated threshold
            row["threshold"], row["held_out_iou"] = (
                calibrate_threshold(model, val_frames, device) if len(val_frames.images) else (0.5, float("nan"))
            )
            rate = row.pop("images_per_second")  # a timing: logged, kept out of the state DVC hashes
            score = row["held_out_iou"] if not math.isnan(row["held_out_iou"]) else float(epoch)
            history.append(row)
            if score > best_iou:
                best_iou = score
                best_info = {"epoch": epoch + 1, "held_out_iou": row["held_out_iou"], "threshold": row["threshold"]}
                save_masknet(state_dir / BEST_FILE, model, best_info)
            _save_state(state_path, model, optimizer, epoch + 1, history, best_iou, fingerprint)
            if live is not None:
                _log_epoch(live, row)
                live.next_step()
            log(
                f"epoch {epoch + 1}/{params.epochs}: loss {row['loss']:.1f}, held-out IoU {row['held_out_iou']:.3f} "
                f"at threshold {row['threshold']}, {rate:.1f} images/s"
            )
            if on_epoch is not None:
                on_epoch({**row, "images_per_second": rate})
        if world > 1:
            dist.barrier()
    summary: dict[str, Any] = {}
    if rank == 0:
        best = torch.load(state_dir / BEST_FILE, map_location="cpu", weights_only=True)
        best_model = MaskNet(**best["config"])
        best_model.load_state_dict(best["state_dict"])
        info = {**best["info"], "params": params.model_dump(mode="json"), "held_out_videos": sorted(held_out)}
        save_masknet(model_path, best_model, info)
        summary = {
            "epochs": params.epochs,
            "best_epoch": best["info"]["epoch"],
            "held_out_iou": None if math.isnan(best["info"]["held_out_iou"]) else best["info"]["held_out_iou"],
            "final_loss": history[-1]["loss"],
            "threshold": best["info"]["threshold"],  # calibrated on the held-out videos; masks are rescaled to it
            "train_frames": int(len(train_frames.images)),
            "held_out_frames": int(len(val_frames.images)),
            "train_videos": len(set(train_frames.videos)),
            "held_out_videos": len(held_out),
        }
        if live is not None:
            for key in ("held_out_iou", "best_epoch"):
                if summary[key] is not None:
                    live.summary[key] = summary[key]
            live.end()
    if world > 1:
        dist.barrier()
    return summary


def _open_live(live_dir: str | os.PathLike, history: list[dict[str, Any]], params: TrainParams) -> Any:
    """A dvclive logger for ``live_dir``; a resumed run replays the finished epochs so the plots are whole."""
    from dvclive import Live

    try:
        live = Live(str(live_dir), save_dvc_exp=False, dvcyaml=False)
    except Exception as exc:  # dvclive names the run after the git revision it runs in
        raise TrainingError(
            f"dvclive could not start ({type(exc).__name__}: {exc}); the project must be a git repository "
            "with at least one commit (git add -A && git commit -m start)"
        ) from None
    for row in history:
        _log_epoch(live, row)
        live.next_step()
    return live


def _log_epoch(live: Any, row: dict[str, Any]) -> None:
    live.log_metric("train/loss", row["loss"])
    if not math.isnan(row["held_out_iou"]):
        live.log_metric("val/held_out_iou", row["held_out_iou"])
        live.log_metric("val/threshold", row["threshold"])


def _read_state(path: Path, log: Callable[[str], Any]) -> dict[str, Any] | None:
    """The resume state, or None when there is none or it cannot be read (then training starts over)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        log(f"{path} cannot be read ({type(exc).__name__}: {exc}): training from the start")
        return None
    return state if isinstance(state, dict) else None


def _save_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    history: list[dict[str, Any]],
    best_iou: float,
    fingerprint: str,
) -> None:
    state = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "history": history,
        "best_iou": best_iou,
        "fingerprint": fingerprint,
    }
    save_torch(state, path)
