"""ResNet + feature pyramid (P2-P6), as in the FPN variants of Faster/Mask R-CNN.

The pyramid is torchvision's FeaturePyramidNetwork with a max-pooled P6;
parameter names follow torchvision's ``backbone.body`` / ``backbone.fpn``
(except the stem, under ``body.stem``), so its weights map by name.
"""

from collections import OrderedDict

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from .resnet import ResNetC5


class ResNetFPN(nn.Module):
    """``{"p2": stride 4, ..., "p5": stride 32, "p6": stride 64}``, all with
    ``out_channels`` channels. Args of the ResNet as for ``ResNetC5``
    (``width`` scales it); ``fpn_norm=True`` puts BatchNorm after the
    pyramid's convolutions (for training from scratch)."""

    def __init__(self, depth: int = 50, weights_path: str | None = None,
                 trainable_stages: int = 3, norm: str = "frozen_bn", out_channels: int = 256,
                 fpn_norm: bool = False, width: int = 64):
        super().__init__()
        self.body = ResNetC5(depth, weights_path, trainable_stages, norm, width)
        widest = self.body.out_channels
        in_channels = [widest // 8, widest // 4, widest // 2, widest]
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=LastLevelMaxPool(),
                                         norm_layer=nn.BatchNorm2d if fpn_norm else None)
        self.out_channels = out_channels
        self.strides = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        x = self.body.stem(x)
        stages = OrderedDict()
        for i in range(1, 5):
            x = getattr(self.body, f"layer{i}")(x)
            stages[str(i - 1)] = x
        pyramid = self.fpn(stages)
        return OrderedDict(zip(self.strides, pyramid.values()))
