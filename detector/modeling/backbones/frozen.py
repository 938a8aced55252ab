"""Helpers shared by the backbones: frozen BatchNorm and frozen stages, and
what a backbone froze with no pretrained weights to freeze. (Their ImageNet
weights are read by detector.weights.files.)"""

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d


class FrozenBatchNorm1d(FrozenBatchNorm2d):
    """FrozenBatchNorm2d for ``[N, C]`` inputs (the BatchNorm1d of the box MLP)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return x * scale + (self.bias - self.running_mean * scale)


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by a ``FrozenBatchNorm2d``
    (and every ``nn.BatchNorm1d`` by a FrozenBatchNorm1d).

    The running statistics and the affine weight and bias are copied, so the
    output is unchanged in eval mode; afterwards the normalization is a fixed
    per-channel affine map in train mode too. Children are replaced in place;
    the return value is ``module``, or its replacement if ``module`` is itself a
    BatchNorm.
    """
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _frozen_copy(module)
    for name, child in module.named_children():
        frozen = freeze_batchnorm(child)
        if frozen is not child:
            setattr(module, name, frozen)
    return module


def _frozen_copy(bn: nn.BatchNorm1d | nn.BatchNorm2d) -> FrozenBatchNorm2d:
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"cannot freeze {bn}: it tracks no running statistics")
    kind = FrozenBatchNorm1d if isinstance(bn, nn.BatchNorm1d) else FrozenBatchNorm2d
    frozen = kind(bn.num_features, eps=bn.eps)
    frozen.to(device=bn.running_mean.device, dtype=bn.running_mean.dtype)
    with torch.no_grad():
        if bn.affine:
            frozen.weight.copy_(bn.weight)
            frozen.bias.copy_(bn.bias)
        frozen.running_mean.copy_(bn.running_mean)
        frozen.running_var.copy_(bn.running_var)
    return frozen


def freeze_stages(stages: Sequence[nn.Module], num_trainable: int) -> list[nn.Module]:
    """Keep only the last ``num_trainable`` of ``stages`` trainable.

    ``stages`` are ordered from the input upwards (stem first). The parameters of
    every earlier stage get ``requires_grad=False``; those of the trainable ones
    get ``requires_grad=True``. Returns the frozen stages.
    """
    if not 0 <= num_trainable <= len(stages):
        raise ValueError(
            f"the number of trainable stages must be in 0..{len(stages)}, got {num_trainable}"
        )
    num_frozen = len(stages) - num_trainable
    for index, stage in enumerate(stages):
        stage.requires_grad_(index >= num_frozen)
    return list(stages[:num_frozen])


def frozen_without_weights(model: nn.Module) -> list[tuple[str, str]]:
    """What the backbones in ``model`` froze at their random initialization, as
    (what, the builder setting that trains it instead) pairs, e.g.
    ``("stem, layer1 frozen (trainable_stages=3)", "trainable_stages=5")``.

    A backbone built without weights records these in ``untrained_frozen``:
    frozen layers keep the values they start with, random filters and
    BatchNorm statistics of mean 0, variance 1, so a model trained with them
    cannot learn what ImageNet weights would have given. Training refuses it
    (DetectionModule); a model whose weights come from elsewhere (a detector's
    state dict) may hold them legitimately, so building one is not an error."""
    found = []
    for module in model.modules():
        for item in getattr(module, "untrained_frozen", ()):
            if item not in found:
                found.append(item)
    return found
