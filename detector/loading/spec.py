"""A detector from its specification, the dict every checkpoint keeps.

A specification is a Hydra-style dict: ``_target_`` names a builder (e.g.
``detector.modeling.builders.fpn_rcnn``) and the other keys are its arguments; nested
dicts with a ``_target_`` are built first (the ROI operators as
``{"_target_": "ops.roi_align", "_partial_": True, ...}``, the transform as
``{"_target_": "detector.modeling.transform.ImageTransform", ...}``). Building one needs
neither Hydra nor Lightning, so ``detector.load`` works without them.

A checkpoint is data, and its specification must not run arbitrary code: only
targets in this project's packages (``detector``, ``ops``) and ``torch`` are
built unless the caller trusts the specification (``trust=True``: a config the
user wrote, or a checkpoint whose builder lives in the user's own package).

Checkpoints written before detector/ was laid out by role name the old module
paths (``detector.builders.fpn_rcnn``, ``detector.transform.ImageTransform``,
``detector.backbones.ResNetC4``): ``MOVED_MODULES`` says where each went, and
``locate`` follows it, so those checkpoints load with no copy of the old modules.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any

from ..modeling.rcnn import GeneralizedRCNN

TRUSTED_PACKAGES = ("detector", "ops", "torch")
_KEYS = ("_target_", "_partial_")

# old module -> the module it became (a package's submodules follow it); only the
# modules whose objects a model specification can name
MOVED_MODULES = {
    **{f"detector.{name}": f"detector.modeling.{name}"
       for name in ("anchors", "backbones", "boxes", "builders", "fuse", "matching", "parts",
                    "poolers", "rcnn", "roi_heads", "rpn", "transform")},
    "detector.validation": "detector.modeling.checks",
}


def current_path(target: str) -> str:
    """``target`` with a module that has moved (see MOVED_MODULES) replaced by
    its new place: ``detector.builders.fpn_rcnn`` ->
    ``detector.modeling.builders.fpn_rcnn``; other paths are returned as given."""
    module, _, attribute = target.rpartition(".")
    for old, new in MOVED_MODULES.items():
        if module == old or module.startswith(old + "."):
            return f"{new}{module[len(old):]}.{attribute}"
    return target


def locate(target: str, *, trust: bool = False) -> Any:
    """The object a dotted path names (``package.module.name``; an old path of a
    moved module is followed, see current_path)."""
    if not isinstance(target, str) or "." not in target:
        raise ValueError("_target_ must be a dotted path such as "
                         f"detector.modeling.builders.fpn_rcnn, got {target!r}")
    if not trust and target.split(".")[0] not in TRUSTED_PACKAGES:
        raise ValueError(
            f"_target_ {target} is outside {', '.join(TRUSTED_PACKAGES)}: a model "
            "specification from a file only builds this project's parts; pass trust=True "
            "(detector.load(..., trust=True)) if you wrote it")
    module_name, _, attribute = current_path(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"_target_ {target}: cannot import it ({error})") from None


def instantiate(node: Any, *, trust: bool = False) -> Any:
    """Builds every ``_target_`` dict in ``node`` (depth first); other dicts and
    lists are copied with their contents built."""
    if isinstance(node, Mapping):
        children = {k: instantiate(v, trust=trust) for k, v in node.items() if k not in _KEYS}
        if "_target_" not in node:
            return children
        unknown = [k for k in children if isinstance(k, str) and k.startswith("_")
                   and k.endswith("_")]
        if unknown:
            raise ValueError(f"{node['_target_']}: unsupported specification keys {unknown} "
                             f"(only {', '.join(_KEYS)} are understood)")
        target = locate(node["_target_"], trust=trust)
        if node.get("_partial_", False):
            return functools.partial(target, **children)
        return target(**children)
    if isinstance(node, (list, tuple)):
        return [instantiate(v, trust=trust) for v in node]
    return node


# files a specification reads only to initialise weights that a checkpoint replaces
PRETRAINED_FILE_KEYS = ("backbone_weights", "init_weights")


def without_pretrained_files(node: Any) -> Any:
    """``node`` with every pretrained-weights path (``backbone_weights``,
    ``init_weights``) set to None: a model rebuilt from a checkpoint takes all its weights from the
    checkpoint, and the file it was first initialised from may not exist on
    this machine."""
    if isinstance(node, Mapping):
        return {k: None if k in PRETRAINED_FILE_KEYS else without_pretrained_files(v)
                for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [without_pretrained_files(v) for v in node]
    return node


def build_model(spec: Mapping, *, trust: bool = False) -> GeneralizedRCNN:
    """The detector a specification describes (see the module's docstring)."""
    if not isinstance(spec, Mapping) or "_target_" not in spec:
        keys = sorted(spec) if isinstance(spec, Mapping) else type(spec).__name__
        raise ValueError(f"a model specification needs '_target_' (a builder), got {keys}")
    model = instantiate(spec, trust=trust)
    if not isinstance(model, GeneralizedRCNN):
        raise TypeError(f"model _target_ {spec['_target_']} built a {type(model).__name__}, "
                        "not a GeneralizedRCNN")
    return model
