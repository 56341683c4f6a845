"""The transfer test (paper §6): fine-tune a Fast R-CNN on the trunk, measure VOC AP.

One *setting* = a trunk (the motion-mask ConvNet's, or random), a fine-tuning
depth (``all``, or ``c1``..``c5``: convX and below frozen) and a training-set
size. :func:`run_transfer` trains it on a training set and scores it on a test
set; the DVC stage, the ``motionmasks transfer`` command and the benchmark all
call it, so they write the same metrics.

Training follows Fast R-CNN: each image (rescaled so its longer side is
``max_side``, flipped at random) contributes ``rois_per_image`` RoIs drawn
from its proposals plus its ground-truth boxes, a quarter foreground (IoU >=
0.5 with a non-difficult object), the rest background (IoU in [0.1, 0.5), or
[0, 0.5) when too few); SGD with momentum, the learning rate divided by 10
for the last quarter of the iterations. Testing scores every proposal, decodes
class-specific boxes, keeps scores above ``score_threshold``, applies per-class
NMS at 0.3 and keeps ``detections_per_image``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image

from models.alexnet import AlexNetTrunk
from models.checkpoint import load_trunk
from models.fast_rcnn import DEPTHS, FastRCNN, decode_boxes, encode_boxes, fast_rcnn_loss, frozen_layer
from motionmasks.convnet import to_input
from motionmasks.detection import DetectionImage, class_names, read_rgb, restrict_to_classes, subset
from motionmasks.voc_ap import Detection, Truth, mean_ap

RANDOM = "random"  # the trunk argument for a randomly initialised trunk


class TransferError(ValueError):
    """A setting cannot run: a bad trunk file, an empty training set, an unknown depth."""


@dataclass(frozen=True)
class TransferSettings:
    """The solver and the detector's sampling; ``params.yaml``'s ``transfer`` group fills it."""

    max_side: int = 400
    iterations: int = 1000
    images_per_batch: int = 2
    rois_per_image: int = 64
    foreground_fraction: float = 0.25
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4
    flip: bool = True
    score_threshold: float = 0.01
    nms_threshold: float = 0.3
    detections_per_image: int = 100
    seed: int = 0


@dataclass(frozen=True)
class Prepared:
    """An image rescaled for the network: pixels, scale, its boxes and proposals at that scale."""

    image: DetectionImage
    pixels: np.ndarray  # (h, w, 3) uint8 RGB
    scale: float
    proposals: np.ndarray  # (K, 4) float32 at the rescaled size


def make_trunk(trunk: str | Path, like: dict[str, Any] | None = None) -> AlexNetTrunk:
    """The trunk of a setting: ``"random"`` (built like ``like``, an AlexNet config) or a checkpoint's."""
    if str(trunk) == RANDOM:
        return AlexNetTrunk(**(like or {}))
    try:
        return load_trunk(trunk)
    except ValueError as exc:  # CheckpointError: one line naming the file
        raise TransferError(str(exc)) from None


def prepare(image: DetectionImage, proposals: np.ndarray, max_side: int) -> Prepared:
    pixels = read_rgb(image.path)
    if pixels.shape[:2] != (image.height, image.width):
        raise ValueError(
            f"{image.image}: the file is {pixels.shape[1]}x{pixels.shape[0]}, the record says "
            f"{image.width}x{image.height}; re-run the proposals stage"
        )
    scale = max_side / max(image.width, image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    pixels = cv2.resize(pixels, size, interpolation=interpolation)
    return Prepared(image, pixels, scale, np.asarray(proposals, np.float32).reshape(-1, 4) * scale)


def sample_rois(
    proposals: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    count: int,
    foreground_fraction: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fast R-CNN's RoI sampling for one image -> (rois (n, 4), labels (n,), target offsets (n, 4)).

    ``boxes`` / ``labels`` are the image's non-difficult objects (labels >= 1);
    they join the candidates. Foreground: best IoU >= 0.5, labelled with that
    object's class; background: best IoU in [0.1, 0.5), topped up from [0, 0.1)
    when there are too few.
    """
    candidates = torch.cat([proposals, boxes]) if len(boxes) else proposals
    if len(boxes):
        overlaps, best = box_iou(candidates, boxes).max(dim=1)
    else:
        overlaps, best = torch.zeros(len(candidates)), torch.zeros(len(candidates), dtype=torch.long)

    def pick(indices: torch.Tensor, n: int) -> torch.Tensor:
        return indices[torch.randperm(len(indices), generator=generator)[:n]]

    foreground = pick(torch.nonzero(overlaps >= 0.5).squeeze(1), round(count * foreground_fraction))
    background = pick(torch.nonzero((overlaps < 0.5) & (overlaps >= 0.1)).squeeze(1), count - len(foreground))
    if len(foreground) + len(background) < count:  # few near misses: plain background fills the rest
        low = pick(torch.nonzero(overlaps < 0.1).squeeze(1), count - len(foreground) - len(background))
        background = torch.cat([background, low])
    keep = torch.cat([foreground, background])
    roi_labels = torch.zeros(len(keep), dtype=torch.long)
    targets = torch.zeros(len(keep), 4)
    if len(foreground):
        roi_labels[: len(foreground)] = labels[best[foreground]]
        targets[: len(foreground)] = encode_boxes(candidates[foreground], boxes[best[foreground]])
    return candidates[keep], roi_labels, targets


def train_detector(
    model: FastRCNN,
    images: Sequence[Prepared],
    names: Sequence[str],
    settings: TransferSettings,
    *,
    device: torch.device,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, float]:
    """Fine-tune ``model`` (its frozen layers set beforehand) on ``images``; returns timing and final losses."""
    label_of = {name: k + 1 for k, name in enumerate(names)}
    generator = torch.Generator().manual_seed(settings.seed)
    order_rng = np.random.default_rng(settings.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(
        trainable, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    step_at = int(round(settings.iterations * 0.75))
    model.train()
    order: list[int] = []
    started, seen = time.perf_counter(), 0
    running: dict[str, float] = {}
    for iteration in range(settings.iterations):
        if iteration == step_at:
            for group in optimiser.param_groups:
                group["lr"] = settings.lr * 0.1
        optimiser.zero_grad(set_to_none=True)
        for _ in range(settings.images_per_batch):
            if not order:
                order = list(order_rng.permutation(len(images)))
            item = images[order.pop()]
            pixels, proposals = item.pixels, torch.from_numpy(item.proposals)
            keep = ~item.image.difficult  # difficult objects do not teach (VOC's rule)
            boxes = torch.from_numpy(item.image.boxes[keep] * item.scale)
            labels = torch.tensor([label_of[c] for c, k in zip(item.image.classes, keep) if k], dtype=torch.long)
            if settings.flip and order_rng.random() < 0.5:
                width = pixels.shape[1]
                pixels = pixels[:, ::-1]
                proposals = torch.stack(
                    [width - proposals[:, 2], proposals[:, 1], width - proposals[:, 0], proposals[:, 3]], dim=1
                )
                boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
            rois, roi_labels, targets = sample_rois(
                proposals,
                boxes.reshape(-1, 4),
                labels,
                settings.rois_per_image,
                settings.foreground_fraction,
                generator,
            )
            logits, offsets = model(to_input(pixels[None]).to(device), [rois.to(device)])
            classification, box = fast_rcnn_loss(logits, offsets, roi_labels.to(device), targets.to(device))
            ((classification + box) / settings.images_per_batch).backward()
            for key, value in (("classification", classification), ("box", box)):  # smoothed for the log
                now = float(value.detach())
                running[key] = 0.95 * running.get(key, now) + 0.05 * now
            seen += 1
        optimiser.step()
        if (iteration + 1) % max(1, settings.iterations // 10) == 0 or iteration + 1 == settings.iterations:
            elapsed = time.perf_counter() - started
            log(
                f"iteration {iteration + 1}/{settings.iterations}: loss cls {running['classification']:.3f} "
                f"box {running['box']:.3f}, {seen / elapsed:.1f} images/s"
            )
    seconds = time.perf_counter() - started
    return {
        "train_seconds": seconds,
        "train_images_per_s": seen / seconds,
        **{f"loss_{k}": v for k, v in running.items()},
    }


@torch.inference_mode()
def detect(model: FastRCNN, item: Prepared, settings: TransferSettings, device: torch.device) -> list[Detection]:
    """Detections of one image, in the original image's pixels."""
    model.eval()
    if len(item.proposals) == 0:
        return []
    proposals = torch.from_numpy(item.proposals).to(device)
    logits, offsets = model(to_input(item.pixels[None]).to(device), [proposals])
    scores = torch.softmax(logits.float(), dim=1)[:, 1:]  # (K, C) without background
    classes = scores.shape[1]
    offsets = offsets.float().reshape(len(proposals), -1, 4)[:, 1:]
    boxes = decode_boxes(proposals.repeat_interleave(classes, 0), offsets.reshape(-1, 4))
    height, width = item.pixels.shape[:2]
    boxes = clip_boxes_to_image(boxes, (height, width))
    scores = scores.reshape(-1)
    labels = torch.arange(1, classes + 1, device=device).repeat(len(proposals))
    keep = torch.nonzero(scores > settings.score_threshold).squeeze(1)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = batched_nms(boxes, scores, labels, settings.nms_threshold)[: settings.detections_per_image]
    boxes = (boxes[keep] / item.scale).cpu().numpy()
    return [
        Detection(item.image.image, int(label), float(score), tuple(float(v) for v in box))  # type: ignore[arg-type]
        for label, score, box in zip(labels[keep].tolist(), scores[keep].tolist(), boxes)
    ]


def score(detections: Sequence[Detection], images: Sequence[DetectionImage], names: Sequence[str]) -> dict[str, Any]:
    """VOC AP at IoU 0.5 per class and the mean, area and VOC2007 11-point."""
    label_of = {name: k + 1 for k, name in enumerate(names)}
    truth = {
        i.image: Truth(i.boxes.astype(np.float64), np.array([label_of[c] for c in i.classes], np.int64), i.difficult)
        for i in images
    }
    labels = list(range(1, len(names) + 1))
    result: dict[str, Any] = {}
    for method, key in (("area", ""), ("11point", "_11point")):
        mean, per_class = mean_ap(detections, truth, labels, method=method)
        result[f"mAP{key}"] = _finite(mean)
        result[f"AP{key}"] = {names[label - 1]: _finite(ap) for label, ap in per_class.items()}
    return result


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 6)


def run_transfer(
    train_images: Sequence[DetectionImage],
    train_proposals: dict[str, np.ndarray],
    test_images: Sequence[DetectionImage],
    test_proposals: dict[str, np.ndarray],
    *,
    trunk: str | Path,
    depth: str,
    train_size: int | None,
    settings: TransferSettings,
    random_like: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Train and score one setting -> (metrics, timing).

    ``metrics`` holds only results (the same for the same inputs and settings,
    so DVC can compare them); ``timing`` holds seconds and images/s.
    """
    if depth not in DEPTHS:
        raise TransferError(f"fine-tuning depth must be one of {', '.join(DEPTHS)}, got {depth!r}")
    usable = [i for i in train_images if (~i.difficult).any()]
    if not usable:
        raise TransferError("the training set has no image with a non-difficult object")
    chosen = subset(usable, train_size, settings.seed)
    names = class_names(chosen)
    test = restrict_to_classes(test_images, names)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(settings.seed)
    model = FastRCNN(make_trunk(trunk, random_like), len(names))
    model.trunk.freeze_through(frozen_layer(depth))
    model.to(device)
    started = time.perf_counter()
    prepared_train = [prepare(i, train_proposals.get(i.image, np.zeros((0, 4))), settings.max_side) for i in chosen]
    prepare_seconds = time.perf_counter() - started
    log(f"{len(chosen)} training images ({len(names)} classes: {', '.join(names)}), depth {depth}, trunk {trunk}")
    timing = train_detector(model, prepared_train, names, settings, device=device, log=log)
    started = time.perf_counter()
    detections: list[Detection] = []
    for image in test:
        detections += detect(
            model,
            prepare(image, test_proposals.get(image.image, np.zeros((0, 4))), settings.max_side),
            settings,
            device,
        )
    test_seconds = time.perf_counter() - started
    metrics = {
        "trunk": RANDOM if str(trunk) == RANDOM else "checkpoint",
        "depth": depth,
        "train_images": len(chosen),
        "test_images": len(test),
        "classes": names,
        "iterations": settings.iterations,
        **score(detections, test, names),
    }
    timing.update(
        prepare_seconds=prepare_seconds,
        test_seconds=test_seconds,
        test_images_per_s=len(test) / max(test_seconds, 1e-9),
    )
    return metrics, timing
