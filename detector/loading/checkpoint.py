"""A ready model from one of this project's checkpoints: ``detector.load(path)``.
Needs neither Lightning nor Hydra (detector.loading.spec builds the model)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from ..modeling.rcnn import GeneralizedRCNN
from .spec import build_model, without_pretrained_files
from ..weights.files import load_fitting, read_checkpoint


def load(path: str | os.PathLike, device: str | torch.device = "cpu", *,
         transform: Mapping | None = None, inference: Mapping | None = None,
         trust: bool = False) -> GeneralizedRCNN:
    """The detector saved in ``path`` (a checkpoint written while training with
    rcnn-train or rcnn-lightning), in eval mode on ``device``: its
    architecture comes from the model specification kept in the checkpoint, with
    its class names, its preprocessing (the resize it was trained with) and its
    inference settings, so ``model.predict(images)`` is ready for images of any
    size. ``transform`` overrides preprocessing settings (e.g. ``{"min_size":
    1024}``) and ``inference`` overrides inference settings (e.g.
    ``{"score_thresh": 0.3}``; see GeneralizedRCNN.configure_inference); None
    values there keep the checkpoint's. ``trust=True`` lets a specification
    whose builder is outside this project's packages be built (see
    detector.loading.spec)."""
    checkpoint = read_checkpoint(path)
    spec = checkpoint.get("hyper_parameters", {}).get("model")
    if not isinstance(spec, Mapping) or spec.get("num_classes") is None:
        raise ValueError(f"{path} has no complete model specification "
                         "(hyper_parameters.model with num_classes); was it written by "
                         "detector.training.DetectionModule from a specification?")
    spec = without_pretrained_files(spec)  # every weight comes from the checkpoint
    for key, overrides in (("transform", transform), ("inference", inference)):
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        if overrides:
            current = dict(spec.get(key) or {})
            if key == "transform":
                current.setdefault("_target_", "detector.modeling.transform.ImageTransform")
            spec[key] = {**current, **overrides}
    model = build_model(spec, trust=trust)
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items()
             if k.startswith(prefix)}
    load_fitting(model, state, f"weights in {path}")
    return model.to(device).eval()
