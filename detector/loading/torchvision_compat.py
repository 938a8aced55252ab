"""Loading torchvision's ``fasterrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn``
weights (e.g. the COCO_V1 files) into the project's model."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..modeling.builders import fpn_rcnn
from ..modeling.rcnn import GeneralizedRCNN
from ..weights.torchvision_names import coco_class_names, torchvision_key

ARCHITECTURES = {"fasterrcnn_resnet50_fpn": False, "maskrcnn_resnet50_fpn": True}


def from_torchvision(name: str, state_dict: Mapping[str, torch.Tensor],
                     class_names: list[str] | None = None) -> GeneralizedRCNN:
    """The project's model with torchvision's weights, preprocessing (resize to
    800 / 1333, ImageNet normalization) and postprocessing, so that it gives
    torchvision's detections for the same weights and images.

    Args:
        name: "fasterrcnn_resnet50_fpn" or "maskrcnn_resnet50_fpn".
        state_dict: the torchvision model's state dict (load files with
            torch.load(path, weights_only=True)).
        class_names: names by label; COCO's when the model has 91 classes.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"from_torchvision: unknown architecture {name!r}; "
                         f"expected one of {sorted(ARCHITECTURES)}")
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in state_dict:
        raise ValueError(f"from_torchvision: the state dict has no {key!r}; is it a "
                         f"{name} state dict?")
    num_classes = state_dict[key].shape[0]
    if class_names is None and num_classes == 91:
        class_names = coco_class_names()
    model = fpn_rcnn(num_classes, masks=ARCHITECTURES[name], class_names=class_names)
    renamed = {torchvision_key(k): v for k, v in state_dict.items()
               if not k.endswith("num_batches_tracked")}
    result = model.load_state_dict(renamed, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"from_torchvision: the state dict does not fit {name}: missing keys "
                         f"{result.missing_keys[:10]}, unexpected keys "
                         f"{result.unexpected_keys[:10]}")
    return model
