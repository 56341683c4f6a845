"""Fast R-CNN (Girshick 2015) on the AlexNet trunk: the paper's transfer test (§6).

The trunk's conv1-conv5 run once per image; each proposal's window of conv5
is max-pooled to 6 x 6 (torchvision's ``RoIPool``, the original's layer, at
conv5's stride of 16) and goes through the trunk's own fc6 and fc7 (the box
head), then two new layers: class scores (background + the target classes)
and class-specific box offsets. Losses and box coding are the original's:
softmax cross-entropy over the sampled RoIs plus smooth-L1 on the offsets of
the foreground RoIs' true class, offsets scaled by (10, 10, 5, 5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import RoIPool

from models.alexnet import CONV_LAYERS, POOL5_SIZE, AlexNetTrunk

CONV5_STRIDE = 16  # conv1 stride 4, pool1 and pool2 stride 2
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_MAX_LOG_SCALE = math.log(1000.0 / 16)  # no box grows more than this in one step (as torchvision clamps)

# The paper's fine-tuning depths: "all" trains every layer, "cX" freezes convX and every layer below it.
DEPTHS = ("all", "c1", "c2", "c3", "c4", "c5")


def frozen_layer(depth: str) -> str | None:
    """The trunk layer :meth:`AlexNetTrunk.freeze_through` takes for a depth ("c3" -> "conv3")."""
    if depth not in DEPTHS:
        raise ValueError(f"fine-tuning depth must be one of {', '.join(DEPTHS)}, got {depth!r}")
    return None if depth == "all" else CONV_LAYERS[int(depth[1]) - 1]


class FastRCNN(nn.Module):
    def __init__(self, trunk: AlexNetTrunk, num_classes: int) -> None:
        """``num_classes`` object classes; label 0 is background."""
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.trunk = trunk
        self.num_classes = num_classes
        self.roi_pool = RoIPool((POOL5_SIZE, POOL5_SIZE), spatial_scale=1.0 / CONV5_STRIDE)
        self.cls_score = nn.Linear(trunk.fc_channels, num_classes + 1)
        self.bbox_pred = nn.Linear(trunk.fc_channels, 4 * (num_classes + 1))
        nn.init.normal_(self.cls_score.weight, std=0.01)  # the original's initialisation
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, images: torch.Tensor, rois: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W), rois per image (K_b, 4) in input pixels ->
        (class logits (sum K, C + 1), box offsets (sum K, 4 (C + 1)))."""
        features = self.trunk.conv5_features(images)
        pooled = self.roi_pool(features, rois)
        x = self.trunk.fc_features(pooled)
        return self.cls_score(x), self.bbox_pred(x)


def encode_boxes(reference: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Offsets (K, 4) that move ``reference`` boxes (K, 4) onto ``target`` boxes (K, 4)."""
    wx, wy, ww, wh = BOX_WEIGHTS
    rw, rh = reference[:, 2] - reference[:, 0], reference[:, 3] - reference[:, 1]
    rx, ry = reference[:, 0] + 0.5 * rw, reference[:, 1] + 0.5 * rh
    tw, th = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1]
    tx, ty = target[:, 0] + 0.5 * tw, target[:, 1] + 0.5 * th
    return torch.stack(
        [wx * (tx - rx) / rw, wy * (ty - ry) / rh, ww * torch.log(tw / rw), wh * torch.log(th / rh)], dim=1
    )


def decode_boxes(reference: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`encode_boxes`: boxes (K, 4) from reference boxes and offsets."""
    wx, wy, ww, wh = BOX_WEIGHTS
    rw, rh = reference[:, 2] - reference[:, 0], reference[:, 3] - reference[:, 1]
    rx, ry = reference[:, 0] + 0.5 * rw, reference[:, 1] + 0.5 * rh
    cx, cy = rx + offsets[:, 0] / wx * rw, ry + offsets[:, 1] / wy * rh
    w = rw * torch.exp(torch.clamp(offsets[:, 2] / ww, max=_MAX_LOG_SCALE))
    h = rh * torch.exp(torch.clamp(offsets[:, 3] / wh, max=_MAX_LOG_SCALE))
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=1)


def fast_rcnn_loss(
    logits: torch.Tensor, offsets: torch.Tensor, labels: torch.Tensor, target_offsets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(classification loss, box loss) of sampled RoIs.

    ``labels`` (K,) int64 with 0 = background; ``target_offsets`` (K, 4), used
    for foreground RoIs only, on the offsets of their own class. Both losses
    are averaged over all K RoIs, as the original does.
    """
    classification = F.cross_entropy(logits, labels)
    foreground = torch.nonzero(labels > 0).squeeze(1)
    if foreground.numel() == 0:
        return classification, offsets.sum() * 0.0
    per_class = offsets.reshape(len(offsets), -1, 4)[foreground, labels[foreground]]
    box = F.smooth_l1_loss(per_class, target_offsets[foreground], beta=1.0, reduction="sum") / len(labels)
    return classification, box
