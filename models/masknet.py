"""The mask ConvNet: an AlexNet trunk and a head that predicts the moving
object's mask (s x s logits, s = 56) from one 227 x 227 frame (paper §5).

Heads:
- ``fc`` (the paper's, DeepMask-style): ``Linear(fc7 -> s*s)``; the logits are
  reshaped to s x s and the loss puts an element-wise sigmoid on them.
- ``conv`` (an option): a 3x3 and a 1x1 convolution on conv5 (13 x 13),
  upsampled bilinearly to s x s. It keeps spatial layout, needs far fewer
  weights, but leaves fc6/fc7 untrained.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from models.alexnet import AlexNetTrunk

OUTPUT_SIZE = 56
Head = Literal["fc", "conv"]


class MaskNet(nn.Module):
    def __init__(
        self,
        width: float = 1.0,
        batch_norm: bool = False,
        head: Head = "fc",
        output_size: int = OUTPUT_SIZE,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if head not in ("fc", "conv"):
            raise ValueError(f"head must be 'fc' or 'conv', got {head!r}")
        self.trunk = AlexNetTrunk(width=width, batch_norm=batch_norm, dropout=dropout)
        self.head_kind: Head = head
        self.output_size = output_size
        if head == "fc":
            self.head: nn.Module = nn.Linear(self.trunk.fc_channels, output_size * output_size)
            nn.init.normal_(self.head.weight, std=0.001)  # start near "don't know" (p = 0.5 everywhere)
            nn.init.zeros_(self.head.bias)
        else:
            c5 = self.trunk.conv_channels[-1]
            to_logit = nn.Conv2d(c5, 1, 1)
            # as the fc head: start near p = 0.5 everywhere; PyTorch's default init gives logits in the tens on
            # batch-normed conv5 features, and the first epochs then only undo the overconfidence
            nn.init.normal_(to_logit.weight, std=0.001)
            assert to_logit.bias is not None
            nn.init.zeros_(to_logit.bias)
            self.head = nn.Sequential(nn.Conv2d(c5, c5, 3, padding=1), nn.ReLU(inplace=True), to_logit)
            # fc6/fc7 take no part in this head's masks: frozen, so DDP (which insists that every trainable
            # parameter gets a gradient) and the optimiser leave them as initialised
            for layer in (self.trunk.fc6, self.trunk.fc7):
                layer.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 227, 227) normalised images -> (B, s, s) mask logits."""
        if self.head_kind == "fc":
            return self.head(self.trunk(images)).view(-1, self.output_size, self.output_size)
        logits = self.head(self.trunk.conv5_features(images))
        size = (self.output_size, self.output_size)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[:, 0]

    def config(self) -> dict:
        return {**self.trunk.config(), "head": self.head_kind, "output_size": self.output_size}
