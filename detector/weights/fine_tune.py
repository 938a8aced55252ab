"""Starting a model from a trained detector: ``init_weights``.

The source is a torchvision ``fasterrcnn_resnet50_fpn`` /
``maskrcnn_resnet50_fpn`` state dict (e.g. the COCO_V1 files) or a checkpoint
of this project. Every tensor of the model whose name (after torchvision's
renaming, detector.loading.torchvision_compat) and shape match the source's is loaded.
The class-specific layers (box classifier, per-class box regression, per-class
mask logits) keep their fresh initialisation for the model's classes, except
the rows of classes the source knows by the same name (``class_map="auto"``:
the user's ``person`` takes COCO's ``person`` rows; the background row is the
background's). Anything else that does not fit (a tensor the source lacks, a
shape that differs outside the class-specific layers, a tensor of the source
the model has no place for) is an error naming the keys, unless it matches one
of the ``skip`` patterns (fnmatch globs on the model's names, e.g.
``roi_heads.mask_branch.*``). What happened is returned as an InitReport,
whose ``table()`` says it with names.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .torchvision_names import coco_class_names, torchvision_key
from .files import load_plain

log = logging.getLogger(__name__)

CLASS_MAPS = ("auto", "none")

# the class-specific layers: name suffix → rows per class (label i owns rows
# [i * rows, (i + 1) * rows) of the first dimension)
CLASS_SPECIFIC = {
    "box_branch.predictor.cls_score.weight": 1,
    "box_branch.predictor.cls_score.bias": 1,
    "box_branch.predictor.bbox_pred.weight": 4,
    "box_branch.predictor.bbox_pred.bias": 4,
    "mask_branch.predictor.logits.weight": 1,
    "mask_branch.predictor.logits.bias": 1,
}
_CLASSIFIER = "roi_heads.box_branch.predictor.cls_score.weight"
# names that are no class of their own (torchvision's COCO list pads with "N/A")
_NOT_CLASSES = {"__background__", "background", "n/a", ""}
_BN_COUNTER = "num_batches_tracked"


@dataclass
class Source:
    """A trained detector's weights, in the project's names.

    ``class_names`` are by label (index 0 the background), None when the file
    does not say; ``mean`` / ``std`` the normalisation the weights were
    trained with, None when unknown."""

    path: str
    kind: str  # "torchvision", "checkpoint" or "state dict"
    state: dict[str, torch.Tensor]
    class_names: list[str] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


# torchvision's detection models normalise with ImageNet's statistics
TORCHVISION_MEAN, TORCHVISION_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# what a checkpoint's transform without mean / std used: ImageTransform's
# defaults (written out here, since weights/ sits below the models; a test
# checks that they agree)
TRANSFORM_MEAN, TRANSFORM_STD = TORCHVISION_MEAN, TORCHVISION_STD


def read_source(path: str | os.PathLike) -> Source:
    """The weights in ``path``: a torchvision detector state dict, a checkpoint
    written by rcnn-train / rcnn-lightning, or a saved GeneralizedRCNN state
    dict. Anything else is refused, saying what the file looks like."""
    path = str(path)
    content = load_plain(path, "model.init_weights file")
    if not isinstance(content, Mapping):
        raise ValueError(f"model.init_weights={path} holds a {type(content).__name__}, not a "
                         "state dict or a checkpoint")
    if "state_dict" in content:
        return _from_checkpoint(path, content)
    if not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise ValueError(f"model.init_weights={path} is neither a checkpoint (no 'state_dict') "
                         "nor a state dict (not every value is a tensor)")
    state = {k: v for k, v in content.items() if not k.endswith(_BN_COUNTER)}
    if any(k.startswith("roi_heads.box_predictor.") for k in state):
        state = {torchvision_key(k): v for k, v in state.items()}
        rows = state[_CLASSIFIER].shape[0] if _CLASSIFIER in state else None
        names = coco_class_names() if rows == 91 else None
        return Source(path, "torchvision", state, names, TORCHVISION_MEAN, TORCHVISION_STD)
    if any(k.startswith("roi_heads.box_branch.") for k in state):
        return Source(path, "state dict", state)
    shown = ", ".join(list(state)[:4])
    hint = (" It looks like an ImageNet classifier's: give it as model.backbone_weights."
            if any(k.startswith(("fc.", "classifier.")) for k in state) else "")
    raise ValueError(f"model.init_weights={path} is not a detector's state dict: it has no "
                     f"box predictor (roi_heads.box_predictor.* in torchvision's names, "
                     f"roi_heads.box_branch.* in this project's); its keys start {shown}.{hint}")


def _from_checkpoint(path: str, checkpoint: Mapping) -> Source:
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items()
             if k.startswith(prefix) and not k.endswith(_BN_COUNTER)}
    if not state:
        raise ValueError(f"model.init_weights={path}: the checkpoint holds no model.* weights")
    spec = (checkpoint.get("hyper_parameters") or {}).get("model")
    spec = spec if isinstance(spec, Mapping) else {}
    mean, std = TRANSFORM_MEAN, TRANSFORM_STD
    transform = spec.get("transform") or {}
    mean = tuple(float(v) for v in transform.get("mean", mean))
    std = tuple(float(v) for v in transform.get("std", std))
    names = spec.get("class_names")
    return Source(path, "checkpoint", state, list(names) if names else None, mean, std)


def class_specific(key: str) -> int | None:
    """Rows per class when ``key`` is a class-specific tensor, else None."""
    for suffix, rows in CLASS_SPECIFIC.items():
        if key.endswith(suffix):
            return rows
    return None


def matched_classes(target: Sequence[str] | None,
                    source: Sequence[str] | None) -> list[tuple[int, int, str]]:
    """(model label, source label, name) of the classes both know by name
    (compared without case and surrounding spaces), background first."""
    if not target or not source:
        return []
    by_name = {}
    for label, name in enumerate(source):
        key = str(name).strip().lower()
        if label > 0 and key not in _NOT_CLASSES:
            by_name.setdefault(key, label)
    pairs = [(0, 0, "background")]
    for label, name in enumerate(target):
        found = by_name.get(str(name).strip().lower()) if label > 0 else None
        if found is not None:
            pairs.append((label, found, str(name)))
    return pairs


@dataclass
class InitReport:
    """What ``init_from`` did, by tensor name."""

    source: str
    kind: str
    loaded: list[str] = field(default_factory=list)
    class_specific: list[str] = field(default_factory=list)
    classes_carried: list[tuple[int, int, str]] = field(default_factory=list)
    kept_initialised: list[str] = field(default_factory=list)  # init_skip, in the model
    left_out: list[str] = field(default_factory=list)  # the source's, unused
    normalisation: tuple | None = None

    def to_dict(self) -> dict:
        return {
            "source": self.source, "kind": self.kind, "loaded": self.loaded,
            "class_specific_reinitialised": self.class_specific,
            "classes_carried": [{"label": t, "source_label": s, "name": n}
                                for t, s, n in self.classes_carried],
            "kept_initialised": self.kept_initialised, "left_out": self.left_out,
            "normalisation": (None if self.normalisation is None else
                              {"mean": list(self.normalisation[0]),
                               "std": list(self.normalisation[1])}),
        }

    def write(self, folder: str | os.PathLike) -> Path:
        """init_weights.txt (the table, loaded tensors named too) and
        init_weights.json in ``folder``, each written whole or not at all;
        returns the text file's path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in (("init_weights.txt", self.table(names=True) + "\n"),
                           ("init_weights.json", json.dumps(self.to_dict(), indent=1))):
            partial = folder / f"{name}.partial"
            partial.write_text(text)
            os.replace(partial, folder / name)
        return folder / "init_weights.txt"

    def table(self, names: bool = False) -> str:
        """The report as text: counts per part, and the names of everything not
        simply loaded (``names=True``: of the loaded tensors too)."""
        lines = [f"Initial weights from {self.source} ({self.kind}):",
                 f"  {'':42} {'tensors':>7}"]
        for part, count in _by_part(self.loaded).items():
            lines.append(f"  loaded    {part:<32} {count:>7}")
        for label, keys in (("class-specific, initialised for the data's classes",
                             self.class_specific),
                            ("kept at initialisation (model.init_skip)", self.kept_initialised),
                            ("left out of the file (model.init_skip)", self.left_out)):
            if keys:
                lines.append(f"  {label}: {len(keys)}")
                lines.extend(f"    {key}" for key in keys)
        carried = [f"{n} (source label {s})" for t, s, n in self.classes_carried if t > 0]
        if self.class_specific:
            background = any(t == 0 for t, _, _ in self.classes_carried)
            lines.append("  class rows carried over by name: "
                         + (", ".join(carried) if carried else "none")
                         + ("; the background's row too" if background else ""))
        if self.normalisation is not None:
            mean, std = self.normalisation
            lines.append(f"  normalisation kept from the source: mean {list(mean)}, "
                         f"std {list(std)}")
        if names:
            lines.append("  loaded:")
            lines.extend(f"    {key}" for key in self.loaded)
        return "\n".join(lines)


def _by_part(keys: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        part = ".".join(parts[:3] if parts[0] == "roi_heads" else parts[:2])
        counts[part] = counts.get(part, 0) + 1
    return counts


def _matches(key: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def init_from(model: nn.Module, source: Source | str | os.PathLike,
              skip: Sequence[str] = (), class_map: str = "auto") -> InitReport:
    """Load ``source`` (a Source or a path; see read_source) into ``model`` as
    the module's docstring says, and return what was done. The model's
    ``class_names`` (index 0 the background) name its classes for
    ``class_map="auto"``; ``"none"`` keeps every class-specific row at its
    initialisation."""
    if class_map not in CLASS_MAPS:
        raise ValueError(f"model.init_class_map must be one of {CLASS_MAPS}, got {class_map!r}")
    if isinstance(skip, str):
        skip = [skip]
    source = source if isinstance(source, Source) else read_source(source)
    target = {k: v for k, v in model.state_dict().items() if not k.endswith(_BN_COUNTER)}
    report = InitReport(source.path, source.kind)
    state, missing, mismatched = {}, [], []
    for key, tensor in target.items():
        given = source.state.get(key)
        rows = class_specific(key)
        if _matches(key, skip):
            report.kept_initialised.append(key)
        elif rows is not None:
            if given is None:
                missing.append(key)
            elif given.shape[1:] != tensor.shape[1:]:
                mismatched.append(f"{key} {tuple(given.shape)} vs {tuple(tensor.shape)}")
            else:
                report.class_specific.append(key)
        elif given is None:
            missing.append(key)
        elif given.shape != tensor.shape:
            mismatched.append(f"{key} {tuple(given.shape)} vs {tuple(tensor.shape)}")
        else:
            state[key] = given
            report.loaded.append(key)
    unexpected = []
    for key in source.state:
        if key not in target:
            (report.left_out if _matches(key, skip) else unexpected).append(key)
    problems = [f"{label} ({len(keys)}): {_listed(keys)}" for label, keys in (
        ("missing from the file", missing), ("in the file but not in the model", unexpected),
        ("other shapes (file vs model)", mismatched)) if keys]
    if problems:
        raise ValueError(
            f"model.init_weights={source.path} ({source.kind}) does not fit the model: "
            + "; ".join(problems) + ". " + (
                "torchvision's detection weights are ResNet-50-FPN's: backbone=resnet50_fpn. "
                if source.kind == "torchvision" and mismatched else "")
            + "Tensors that should not be loaded can be named in "
            "model.init_skip (glob patterns on the model's names, e.g. "
            "'roi_heads.mask_branch.*')")
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
        if class_map == "auto" and report.class_specific:
            names = getattr(model, "class_names", None)
            report.classes_carried = matched_classes(names, source.class_names)
            params = dict(model.state_dict())
            for key in report.class_specific:
                _copy_rows(params[key], source.state[key], report.classes_carried,
                           class_specific(key))
    return report


def _copy_rows(target: torch.Tensor, given: torch.Tensor,
               pairs: Sequence[tuple[int, int, str]], rows: int) -> None:
    for label, source_label, _ in pairs:
        if (source_label + 1) * rows <= given.shape[0] and (label + 1) * rows <= target.shape[0]:
            target[label * rows:(label + 1) * rows] = given[
                source_label * rows:(source_label + 1) * rows]


def _listed(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown}, ... ({len(keys) - limit} more)"


def use_normalisation(model: nn.Module, source: Source) -> tuple | None:
    """Sets the model's input normalisation to the source's (its weights expect
    it); returns (mean, std) when the source has one."""
    if source.mean is None or source.std is None:
        return None
    transform = model.transform
    transform.mean = torch.tensor(source.mean, dtype=transform.mean.dtype).view(-1, 1, 1)
    transform.std = torch.tensor(source.std, dtype=transform.std.dtype).view(-1, 1, 1)
    return source.mean, source.std


def normalisation_of(path: str | os.PathLike) -> tuple | None:
    """(mean, std) the weights in ``path`` were trained with, None if unknown."""
    source = read_source(path)
    return None if source.mean is None else (source.mean, source.std)


def with_source_normalisation(spec: Mapping) -> dict:
    """A model specification whose ``init_weights`` source has a normalisation
    with that normalisation in its transform (``mean`` / ``std``), so that the
    checkpoints written record what the model uses. A different one set in
    the specification is replaced, with a warning."""
    spec = dict(spec)
    path = spec.get("init_weights")
    normalisation = normalisation_of(path) if path else None
    if normalisation is None:
        return spec
    transform = dict(spec.get("transform")
                     or {"_target_": "detector.modeling.transform.ImageTransform"})
    for key, value in zip(("mean", "std"), normalisation):
        given = transform.get(key)
        if given is not None and [float(v) for v in given] != [float(v) for v in value]:
            log.warning("model.transform.%s=%s replaced by %s, the normalisation the weights of "
                        "model.init_weights=%s were trained with", key, list(given), list(value),
                        path)
        transform[key] = list(value)
    spec["transform"] = transform
    return spec
