"""The AlexNet trunk (conv1-conv5, fc6, fc7), the paper's, as Caffe shaped it.

Layers are named ``conv1`` ... ``conv5``, ``fc6``, ``fc7`` so the transfer
stage can load them and freeze "conv X and below" by name. Channel counts
are Caffe's AlexNet (96, 256, 384, 384, 256; 4096-d fc) times ``width``;
``batch_norm`` adds a batch norm after every conv and fc (an option: the
paper's AlexNet has none). No weights come from any labelled dataset: a trunk
is either initialised at random or loaded from this project's checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SIZE = 227  # the paper's input: 227 x 227 -> conv1 55 -> pool 27 -> conv2..5 13 -> pool5 6
CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
FC_LAYERS = ("fc6", "fc7")
LAYERS = CONV_LAYERS + FC_LAYERS
_CAFFE_CHANNELS = (96, 256, 384, 384, 256)
_CAFFE_FC = 4096
POOL5_SIZE = 6  # conv5 (13 x 13) max-pooled 3/2 -> 6 x 6, what fc6 reads (and Fast R-CNN's RoI pool size)


def _conv(cin: int, cout: int, kernel: int, stride: int, padding: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, padding, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _fc(cin: int, cout: int, batch_norm: bool, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(cin, cout, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(cout))
    layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class AlexNetTrunk(nn.Module):
    """conv1-conv5 and fc6, fc7 of AlexNet; ``forward`` gives fc7 features, (B, fc_channels).

    ``conv5_features`` gives the conv5 map (before pool5) that Fast R-CNN RoI-pools;
    ``fc_features`` runs fc6/fc7 on pooled (B, C5, 6, 6) features (the box head).
    """

    def __init__(self, width: float = 1.0, batch_norm: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        if not 0 < width <= 4:
            raise ValueError(f"width must be in (0, 4], got {width}")
        c1, c2, c3, c4, c5 = (max(8, round(c * width)) for c in _CAFFE_CHANNELS)
        fc = max(16, round(_CAFFE_FC * width))
        self.width, self.batch_norm, self.dropout = width, batch_norm, dropout
        self.conv_channels = (c1, c2, c3, c4, c5)
        self.fc_channels = fc
        self.conv1 = _conv(3, c1, 11, 4, 0, batch_norm)
        self.pool1 = nn.MaxPool2d(3, 2)
        self.conv2 = _conv(c1, c2, 5, 1, 2, batch_norm)
        self.pool2 = nn.MaxPool2d(3, 2)
        self.conv3 = _conv(c2, c3, 3, 1, 1, batch_norm)
        self.conv4 = _conv(c3, c4, 3, 1, 1, batch_norm)
        self.conv5 = _conv(c4, c5, 3, 1, 1, batch_norm)
        self.pool5 = nn.MaxPool2d(3, 2)
        self.fc6 = _fc(c5 * POOL5_SIZE * POOL5_SIZE, fc, batch_norm, dropout)
        self.fc7 = _fc(fc, fc, batch_norm, dropout)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def conv5_features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv1(images))
        x = self.pool2(self.conv2(x))
        return self.conv5(self.conv4(self.conv3(x)))

    def fc_features(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc7(self.fc6(torch.flatten(pooled, 1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc_features(self.pool5(self.conv5_features(images)))

    def freeze_through(self, layer: str | None) -> None:
        """Freeze ``layer`` and every layer below it (the paper's ">cX": "conv1".."conv5"); None freezes nothing.

        Frozen layers keep their weights and their batch-norm statistics
        (their norms stay in eval mode; see :meth:`train`).
        """
        if layer is not None and layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; one of {', '.join(LAYERS)}")
        depth = LAYERS.index(layer) + 1 if layer else 0
        self._frozen = LAYERS[:depth]
        for name in LAYERS:
            for parameter in getattr(self, name).parameters():
                parameter.requires_grad_(name not in self._frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> AlexNetTrunk:
        super().train(mode)
        for name in getattr(self, "_frozen", ()):
            getattr(self, name).eval()
        return self

    def config(self) -> dict:
        return {"width": self.width, "batch_norm": self.batch_norm, "dropout": self.dropout}
