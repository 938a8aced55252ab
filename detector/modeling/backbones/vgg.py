"""VGG16 as in Faster R-CNN: conv1_1..conv5_3 as the backbone, fc6/fc7 as the box head.

Parameter names follow torchvision's ``vgg16`` (``features.N`` in the backbone;
the head maps ``classifier.0``/``classifier.3`` to ``fc6``/``fc7``), so an
ImageNet state dict saved from torchvision loads directly.
"""

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from ...weights.files import load_local_weights
from .frozen import freeze_stages

# Index in torchvision's vgg16().features where each conv block starts, and
# where conv5_3's ReLU ends (the last max pool is dropped: stride 16, not 32).
_BLOCK_STARTS = (0, 5, 10, 17, 24)
_CONV5_END = 30


class VGG16Conv5(nn.Module):
    """VGG16 up to conv5_3 + ReLU: ``{"conv5": [B, 512, H/16, W/16]}``.

    Args:
        weights_path: local file with a torchvision ``vgg16`` ImageNet state
            dict, or None for torchvision's random initialization. Nothing is
            downloaded.
        trainable_from: index of the first trainable conv block, 1..5. Blocks
            before it are frozen; the default 3 freezes conv1 and conv2, as
            Faster R-CNN does.
    """

    def __init__(self, weights_path: str | None = None, trainable_from: int = 3):
        super().__init__()
        if not 1 <= trainable_from <= len(_BLOCK_STARTS):
            raise ValueError(
                f"trainable_from must be in 1..{len(_BLOCK_STARTS)}, got {trainable_from!r}"
            )
        # What vgg16(weights=None).features is, without building the 120M
        # parameter classifier only to drop it.
        self.features = make_layers(cfgs["D"])[:_CONV5_END]
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        self.out_channels = 512
        self.strides = {"conv5": 16}

        if weights_path is not None:
            load_local_weights(self, weights_path, skip=("classifier.",))
        ends = (*_BLOCK_STARTS[1:], _CONV5_END)
        blocks = [self.features[start:end] for start, end in zip(_BLOCK_STARTS, ends)]
        freeze_stages(blocks, len(blocks) - trainable_from + 1)
        self.untrained_frozen = []  # see frozen.frozen_without_weights
        if weights_path is None and trainable_from > 1:
            self.untrained_frozen.append(
                (f"conv1-conv{trainable_from - 1} frozen (trainable_from={trainable_from})",
                 "trainable_from=1"))

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return OrderedDict([("conv5", self.features(x))])


class VGG16BoxHead(nn.Module):
    """Faster R-CNN's fc6/fc7 box head: ``[K, 512, 7, 7]`` -> ``[K, 4096]``.

    Flatten, fc6 (25088 -> 4096), ReLU, fc7 (4096 -> 4096), ReLU, with dropout
    after each ReLU when ``dropout > 0`` (off by default).

    Args:
        weights_path: local file with a torchvision ``vgg16`` ImageNet state
            dict; its ``classifier.0`` and ``classifier.3`` become fc6 and fc7.
            None keeps ``nn.Linear``'s default initialization (as in
            torchvision's ``TwoMLPHead``).
        dropout: dropout probability after fc6 and fc7.
    """

    def __init__(self, weights_path: str | None = None, dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.fc6 = nn.Linear(512 * 7 * 7, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_channels = 4096

        if weights_path is not None:
            load_local_weights(
                self,
                weights_path,
                skip=("features.", "classifier."),
                rename={"classifier.0.": "fc6.", "classifier.3.": "fc7."},
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(torch.relu(self.fc6(x.flatten(1))))
        return self.dropout(torch.relu(self.fc7(x)))
