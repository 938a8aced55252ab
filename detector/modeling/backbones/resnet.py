"""ResNet backbones cut from torchvision's ResNets (18, 34, 50, 101).

``ResNetC4`` ends at res4 (stride 16) and pairs with ``ResNetRes5Head``, the
res5 stage applied to each pooled ROI, as in the C4 models of the Mask R-CNN
paper; ``ResNetC5`` ends at res5 (stride 32). Parameter and buffer names follow
torchvision's (the stem's ``conv1`` and ``bn1`` live under ``stem``), so an
ImageNet state dict saved from torchvision loads directly.

``norm`` is ``"frozen_bn"`` (every BatchNorm becomes a fixed affine map, the
usual choice for detection's small per-GPU batches) or ``"bn"`` (BatchNorm
keeps training in the trainable stages; the frozen stages' BatchNorms are
frozen all the same).
"""

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50, resnet101
from torchvision.models.resnet import BasicBlock, Bottleneck

from ...weights.files import load_local_weights
from .frozen import freeze_batchnorm, freeze_stages

_RESNETS = {18: resnet18, 34: resnet34, 50: resnet50, 101: resnet101}
_NORMS = ("frozen_bn", "bn")

# torchvision keeps the stem's conv1 and bn1 at the top level.
_STEM_RENAME = {"conv1.": "stem.conv1.", "bn1.": "stem.bn1."}


_STAGE_BLOCKS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
                 50: (Bottleneck, [3, 4, 6, 3]), 101: (Bottleneck, [3, 4, 23, 3])}


def _torchvision_resnet(depth: int, norm: str, width: int = 64) -> nn.Module:
    """torchvision's ResNet, or with ``width`` != 64 the same network with every
    stage's width scaled by width / 64 (for small from-scratch models)."""
    if depth not in _RESNETS:
        raise ValueError(f"depth must be one of {sorted(_RESNETS)}, got {depth!r}")
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    if not isinstance(width, int) or width < 8 or width % 8:
        raise ValueError(f"width must be a multiple of 8, at least 8, got {width!r}")
    if width == 64:
        return _RESNETS[depth](weights=None)
    return _ScaledResNet(*_STAGE_BLOCKS[depth], width)


class _ScaledResNet(nn.Module):
    """A ResNet whose stages have width, 2x, 4x, 8x channels (torchvision's
    blocks and attribute names; initialized as torchvision initializes)."""

    def __init__(self, block: type, layers: list[int], width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = width
        for i, (count, stride) in enumerate(zip(layers, (1, 2, 2, 2))):
            planes = width * 2**i
            blocks = []
            for j in range(count):
                out = planes * block.expansion
                downsample = None
                if j == 0 and (stride != 1 or channels != out):
                    downsample = nn.Sequential(nn.Conv2d(channels, out, 1, stride, bias=False),
                                               nn.BatchNorm2d(out))
                blocks.append(block(channels, planes, stride if j == 0 else 1, downsample))
                channels = out
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(channels, 1000)  # unused; its in_features is the trunk's width
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class _ResNetTrunk(nn.Module):
    """The stem and residual stages ``layer1..layer{num_layers}`` of a torchvision ResNet."""

    def __init__(
        self,
        depth: int,
        num_layers: int,
        out_name: str,
        weights_path: str | None,
        trainable_stages: int,
        norm: str,
        width: int = 64,
    ):
        super().__init__()
        if width != 64 and weights_path is not None:
            raise ValueError(f"ImageNet weights are for width 64; width={width} trains from "
                             "scratch (weights_path must be None)")
        if not 0 <= trainable_stages <= num_layers + 1:
            raise ValueError(
                f"trainable_stages must be in 0..{num_layers + 1}, got {trainable_stages!r}"
            )
        net = _torchvision_resnet(depth, norm, width)
        self.stem = nn.Sequential(
            OrderedDict(conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool)
        )
        self._layer_names = [f"layer{i}" for i in range(1, num_layers + 1)]
        for name in self._layer_names:
            self.add_module(name, getattr(net, name))
        self._out_name = out_name
        self.out_channels = net.fc.in_features // 2 ** (4 - num_layers)
        self.strides = {out_name: 2 ** (num_layers + 1)}

        if weights_path is not None:
            dropped = tuple(f"layer{i}." for i in range(num_layers + 1, 5))
            load_local_weights(self, weights_path, skip=("fc.", *dropped), rename=_STEM_RENAME)
        stages = [self.stem, *(getattr(self, name) for name in self._layer_names)]
        frozen = freeze_stages(stages, trainable_stages)
        for stage in stages if norm == "frozen_bn" else frozen:
            freeze_batchnorm(stage)
        # see frozen.frozen_without_weights
        self.untrained_frozen = []
        if weights_path is None and frozen:
            names = ", ".join(["stem", *self._layer_names][:len(frozen)])
            self.untrained_frozen.append((f"{names} frozen (trainable_stages={trainable_stages})",
                                          f"trainable_stages={len(stages)}"))
        if weights_path is None and norm == "frozen_bn":
            self.untrained_frozen.append(("BatchNorm frozen (norm=frozen_bn)", "norm=bn"))

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        x = self.stem(x)
        for name in self._layer_names:
            x = getattr(self, name)(x)
        return OrderedDict([(self._out_name, x)])


class ResNetC4(_ResNetTrunk):
    """ResNet up to res4 (``layer3``): ``{"res4": [B, C, H/16, W/16]}``.

    Args:
        depth: 18, 34, 50 or 101.
        weights_path: local file with a torchvision ImageNet state dict of that
            depth, or None for random initialization. Nothing is downloaded.
        trainable_stages: how many stages train, counted from the top
            (layer3, layer2, layer1, stem), 0..4; the others are frozen.
        norm: ``"frozen_bn"`` or ``"bn"`` (see the module docstring).

        width: the stem's channels (64 in the standard ResNets); every stage
            scales with it. Other widths train from scratch.

    ``out_channels`` is 256 for depth 18/34 and 1024 for 50/101 (times width / 64).
    """

    def __init__(
        self,
        depth: int = 50,
        weights_path: str | None = None,
        trainable_stages: int = 3,
        norm: str = "frozen_bn",
        width: int = 64,
    ):
        super().__init__(depth, 3, "res4", weights_path, trainable_stages, norm, width)


class ResNetC5(_ResNetTrunk):
    """ResNet up to res5 (``layer4``): ``{"res5": [B, C, H/32, W/32]}``.

    Args as for ``ResNetC4``, except that ``trainable_stages`` counts
    (layer4, layer3, layer2, layer1, stem) and so runs 0..5; ``width`` (the
    stem's channels, 64 in the standard ResNets) scales every stage.

    ``out_channels`` is 512 for depth 18/34 and 2048 for 50/101 (times width / 64).
    """

    def __init__(
        self,
        depth: int = 50,
        weights_path: str | None = None,
        trainable_stages: int = 3,
        norm: str = "frozen_bn",
        width: int = 64,
    ):
        super().__init__(depth, 4, "res5", weights_path, trainable_stages, norm, width)


class ResNetRes5Head(nn.Module):
    """The C4 box head: res5 (``layer4``) applied to pooled ROI features.

    Takes ``[K, C_res4, 14, 14]`` (the output of ``ResNetC4`` pooled per ROI);
    the first block of res5 has stride 2, so the map becomes
    ``[K, C_res5, 7, 7]``, which is then average pooled to ``[K, C_res5]``.
    ``forward(x, pool=False)`` returns the 7x7 map instead (the C4 mask head
    works on it).

    Args:
        depth: 18, 34, 50 or 101; must match the ``ResNetC4`` it follows.
        weights_path: local torchvision ImageNet state dict (its ``layer4.*``
            keys are used), or None.
        norm: ``"frozen_bn"`` or ``"bn"``. The head is always trainable.
        width: as for ``ResNetC4``; must match it.

    ``out_channels`` is 512 for depth 18/34 and 2048 for 50/101 (times width / 64).
    """

    def __init__(self, depth: int = 50, weights_path: str | None = None,
                 norm: str = "frozen_bn", width: int = 64):
        super().__init__()
        if width != 64 and weights_path is not None:
            raise ValueError(f"ImageNet weights are for width 64; width={width} trains from "
                             "scratch (weights_path must be None)")
        net = _torchvision_resnet(depth, norm, width)
        self.layer4 = net.layer4
        self.out_channels = net.fc.in_features
        if weights_path is not None:
            trunk = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "fc.")
            load_local_weights(self, weights_path, skip=trunk)
        if norm == "frozen_bn":
            freeze_batchnorm(self)
        self.untrained_frozen = []  # see frozen.frozen_without_weights
        if weights_path is None and norm == "frozen_bn":
            self.untrained_frozen.append(("BatchNorm frozen (norm=frozen_bn)", "norm=bn"))

    def forward(self, x: torch.Tensor, pool: bool = True) -> torch.Tensor:
        x = self.layer4(x)
        return x.mean(dim=(2, 3)) if pool else x
