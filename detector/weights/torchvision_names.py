"""torchvision's detection models in the project's terms: the names of their
state dicts' keys, and the COCO class names of their released weights."""

from __future__ import annotations

import re

# torchvision key pattern → the project's; both the current torchvision layout
# and the older one of the released COCO files are accepted.
_RENAMES = [
    (r"^backbone\.body\.(conv1|bn1)\.", r"backbone.body.stem.\1."),
    (r"^rpn\.head\.conv\.(0\.0\.)?", "rpn.head.conv."),
    # the FPN's 1x1 and 3x3 convolutions before torchvision 0.13 wrapped them (blocks.N.0.)
    (r"^(backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.(weight|bias)$", r"\1.0.\2"),
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


def torchvision_key(key: str) -> str:
    """The project's name for a key of torchvision's detection state dicts."""
    for pattern, replacement in _RENAMES:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return key


def coco_class_names() -> list[str]:
    """torchvision's COCO category names, index = label (0 = background)."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    return list(MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])
