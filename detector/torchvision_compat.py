"""Loading torchvision's ``fasterrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn``
weights (e.g. the COCO_V1 files) into the project's model."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .builders import fpn_rcnn
from .rcnn import GeneralizedRCNN

ARCHITECTURES = {"fasterrcnn_resnet50_fpn": False, "maskrcnn_resnet50_fpn": True}

# torchvision key pattern → the project's; both the current torchvision layout
# and the older one of the released COCO files are accepted.
_RENAMES = [
    (r"^backbone\.body\.(conv1|bn1)\.", r"backbone.body.stem.\1."),
    (r"^rpn\.head\.conv\.(0\.0\.)?", "rpn.head.conv."),
    (r"^rpn\.head\.cls_logits\.", "rpn.head.objectness."),
    (r"^rpn\.head\.bbox_pred\.", "rpn.head.deltas."),
    (r"^roi_heads\.box_head\.", "roi_heads.box_branch.head."),
    (r"^roi_heads\.box_predictor\.", "roi_heads.box_branch.predictor."),
    (r"^roi_heads\.mask_head\.(\d+)\.0\.", lambda m: f"roi_heads.mask_branch.head.convs.{m[1]}."),
    (r"^roi_heads\.mask_head\.mask_fcn(\d+)\.",
     lambda m: f"roi_heads.mask_branch.head.convs.{int(m[1]) - 1}."),
    (r"^roi_heads\.mask_predictor\.conv5_mask\.", "roi_heads.mask_branch.predictor.upsample."),
    (r"^roi_heads\.mask_predictor\.mask_fcn_logits\.", "roi_heads.mask_branch.predictor.logits."),
]


def _rename(key: str) -> str:
    for pattern, replacement in _RENAMES:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return key


def coco_class_names() -> list[str]:
    """torchvision's COCO category names, index = label (0 = background)."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    return list(MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])


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
    renamed = {_rename(k): v for k, v in state_dict.items()
               if not k.endswith("num_batches_tracked")}
    result = model.load_state_dict(renamed, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"from_torchvision: the state dict does not fit {name}: missing keys "
                         f"{result.missing_keys[:10]}, unexpected keys "
                         f"{result.unexpected_keys[:10]}")
    return model
