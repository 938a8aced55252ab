"""A detector's parts by name, and freezing them: ``freeze=[backbone, fpn]``.

The parts: ``backbone`` (the trunk: the ResNet or VGG), ``fpn`` (the pyramid
of an FPN model), ``rpn``, ``box_head`` and ``box_predictor``, ``mask_head``
and ``mask_predictor``. (In the C4 model the mask head is res5, the box
head's: freezing either freezes it.) A frozen part's parameters stop training
and its BatchNorm layers become frozen ones (fixed statistics and affine), so
that nothing in it changes while the rest trains.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

from .backbones.frozen import freeze_batchnorm

PARTS = ("backbone", "fpn", "rpn", "box_head", "box_predictor", "mask_head", "mask_predictor")


def model_parts(model: nn.Module) -> dict[str, str]:
    """{part: the module's name in the model} for the parts ``model`` has."""
    parts = {}
    backbone = model.backbone
    if hasattr(backbone, "body") and hasattr(backbone, "fpn"):
        parts.update(backbone="backbone.body", fpn="backbone.fpn")
    else:
        parts["backbone"] = "backbone"
    parts["rpn"] = "rpn"
    parts.update(box_head="roi_heads.box_branch.head",
                 box_predictor="roi_heads.box_branch.predictor")
    if getattr(model.roi_heads, "mask_branch", None) is not None:
        parts.update(mask_head="roi_heads.mask_branch.head",
                     mask_predictor="roi_heads.mask_branch.predictor")
    return parts


def freeze(model: nn.Module, parts: Sequence[str],
           pretrained: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """Freezes ``parts`` of ``model`` (see the module's docstring). Returns
    what was frozen at its random initialisation, as (what, the setting that
    trains it instead) pairs for detector.modeling.backbones.frozen_without_weights:
    a part any of whose tensors is not among ``pretrained`` (the names of the
    tensors loaded from a file; None: none were)."""
    if isinstance(parts, str):
        parts = [parts]
    parts = list(parts)
    available = model_parts(model)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"model.freeze: unknown parts {unknown}; the parts are {list(PARTS)}")
    absent = [p for p in parts if p not in available]
    if absent:
        raise ValueError(f"model.freeze: this model has no {', '.join(absent)} (its parts: "
                         f"{', '.join(available)})")
    pretrained = set(pretrained or ())
    untrained = []
    for part in parts:
        name = available[part]
        module = model.get_submodule(name)
        keys = [f"{name}.{k}" for k in module.state_dict() if not k.endswith("num_batches_tracked")]
        if not all(k in pretrained for k in keys):
            untrained.append((f"{part} frozen (model.freeze={parts})",
                              f"freeze=[{', '.join(p for p in parts if p != part)}]"))
        module.requires_grad_(False)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, freeze_batchnorm(module))
    return untrained
