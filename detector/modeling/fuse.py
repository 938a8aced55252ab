"""Inference-time folding of BatchNorm into the convolution before it.

A frozen BatchNorm (every pretrained backbone here), or a BatchNorm in eval
mode, is a per-channel scale and shift: y = (x - mean) * weight / sqrt(var +
eps) + bias. Applied to a convolution's output it folds into the convolution's
weights and bias, one layer fewer and the same result (to float rounding).
Only pairs whose order is certain are folded: consecutive (Conv2d, norm)
children of an nn.Sequential (a stem, a downsample), and torchvision's
ResNet blocks' ``convN`` / ``bnN``.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d

_NORMS = (FrozenBatchNorm2d, nn.BatchNorm2d)


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and isinstance(norm, _NORMS)
            and conv.out_channels == norm.weight.shape[0])


@torch.no_grad()
def _fold(conv: nn.Conv2d, norm: nn.Module) -> None:
    if isinstance(norm, nn.BatchNorm2d) and (norm.training or norm.running_mean is None):
        raise ValueError("fold_batchnorm: a BatchNorm in training mode (or without running "
                         "statistics) cannot be folded; call model.eval() first")
    eps = norm.eps
    scale = norm.weight.double() * torch.rsqrt(norm.running_var.double() + eps)
    shift = norm.bias.double() - norm.running_mean.double() * scale
    weight = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
    bias = (conv.bias.double() if conv.bias is not None else torch.zeros_like(scale))
    conv.weight.copy_(weight.to(conv.weight.dtype))
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.empty_like(scale, dtype=conv.weight.dtype),
                                 requires_grad=False)
    conv.bias.copy_((bias * scale + shift).to(conv.bias.dtype))


def _pairs(module: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv name, norm name) of the pairs in ``module`` whose order is certain."""
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        return [(module, a, b) for a, b in zip(names, names[1:])
                if _foldable(module._modules[a], module._modules[b])]
    if isinstance(module, (BasicBlock, Bottleneck)):
        return [(module, f"conv{i}", f"bn{i}") for i in (1, 2, 3)
                if hasattr(module, f"conv{i}") and
                _foldable(getattr(module, f"conv{i}"), getattr(module, f"bn{i}"))]
    return []


def fold_batchnorm(model: nn.Module) -> int:
    """Folds, in place, every BatchNorm that certainly follows a convolution
    into it and replaces the norm with nn.Identity; returns how many were
    folded. Its state dict then has other keys: fold after loading weights."""
    pairs = [pair for module in model.modules() for pair in _pairs(module)]
    for parent, conv_name, norm_name in pairs:
        _fold(getattr(parent, conv_name), getattr(parent, norm_name))
    for parent, _, norm_name in pairs:
        setattr(parent, norm_name, nn.Identity())
    return len(pairs)
