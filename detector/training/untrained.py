"""A recipe that cannot learn, refused before training: layers frozen with no
pretrained weights to freeze."""

from __future__ import annotations

from torch import nn

from ..modeling.backbones import frozen_without_weights


def refuse_untrained_frozen(model: nn.Module) -> None:
    """Training a model built from a specification: a backbone that froze
    layers (stages, BatchNorm) with no ``backbone_weights`` to freeze could
    never learn them (detector.modeling.backbones.frozen_without_weights), so the run
    is refused before its first step, naming the settings that fix it."""
    frozen = frozen_without_weights(model)
    if frozen:
        fixes = " ".join(f"model.{fix}" for _, fix in frozen)
        raise ValueError(
            f"model.backbone_weights is not set, but the backbone freezes layers it would load: "
            f"{'; '.join(what for what, _ in frozen)}. Frozen without pretrained weights they "
            "keep their random initialization (BatchNorm: mean 0, variance 1) for the whole run. "
            "Give model.backbone_weights=PATH (a local torchvision ImageNet state dict), or "
            f"train from scratch with {fixes}")
