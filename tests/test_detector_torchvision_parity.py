"""The same torchvision weights give torchvision's detections (issue: from_torchvision).

torchvision models are built with weights=None (seeded); nothing is downloaded.
Their classifier is sharpened so that random weights still give confident,
varied detections to compare.
"""

import pytest
import torch
from torchvision.models import resnet50
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.misc import FrozenBatchNorm2d

import detector

from detections import assert_same_detections


def _torchvision_model(cls):
    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3)
    model = cls(backbone, num_classes=91).eval()
    with torch.no_grad():
        # confident but distinct scores: at 30x most saturate at 1.0, and which of
        # the tied boxes survive NMS and the top 100 is then arbitrary
        model.roi_heads.box_predictor.cls_score.weight.mul_(3)
    return model


def _images():
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 300, 410, generator=g), torch.rand(3, 260, 340, generator=g)]


def _without_subpixel_masks(detections: dict) -> dict:
    """The detections with the masks of boxes under 1 px wide or tall blanked: such
    a box's pasted mask is the one pixel column (or row) that the rounding of its
    edges picks, and boxes equal to 1e-4 px can pick neighbouring columns (seen
    here: a box 0.2 px wide at x = 229.8, whose column 229 differed)."""
    sides = detections["boxes"][:, 2:] - detections["boxes"][:, :2]
    masks = detections["masks"].clone()
    masks[(sides < 1).any(dim=1)] = 0
    return {**detections, "masks": masks}


@pytest.mark.parametrize("name, cls", [
    ("maskrcnn_resnet50_fpn", MaskRCNN),
    # the same box branch as Mask R-CNN's: slow (pytest -m slow)
    pytest.param("fasterrcnn_resnet50_fpn", FasterRCNN, marks=pytest.mark.slow)])
def test_same_detections_as_torchvision(name, cls):
    theirs_model = _torchvision_model(cls)
    ours_model = detector.from_torchvision(name, theirs_model.state_dict()).eval()
    images = _images()
    with torch.no_grad():
        theirs = theirs_model(images)
    ours = ours_model.predict(images)
    for t, o, image in zip(theirs, ours, images):
        assert len(t["boxes"]) > 10  # the comparison is not vacuous
        assert ("masks" in o) == (name.startswith("mask"))
        if "masks" in o:
            assert o["masks"].shape == t["masks"].shape == (len(t["boxes"]), 1, *image.shape[-2:])
            o, t = _without_subpixel_masks(o), _without_subpixel_masks(t)
        # in any order: near-equal scores may swap places on another CPU
        assert_same_detections(o, t, score_atol=1e-4, box_atol=0.05,
                               mask_atol=5e-3 if "masks" in o else None)


def test_coco_class_names_and_wrong_architecture():
    model = _torchvision_model(FasterRCNN)
    state = model.state_dict()
    ours = detector.from_torchvision("fasterrcnn_resnet50_fpn", state)
    assert ours.class_names[1] == "person" and len(ours.class_names) == 91
    with pytest.raises(ValueError, match="missing keys .*mask_branch"):
        detector.from_torchvision("maskrcnn_resnet50_fpn", state)
    with pytest.raises(ValueError, match="unknown architecture 'retinanet'"):
        detector.from_torchvision("retinanet", state)
    del state["rpn.head.cls_logits.weight"]
    with pytest.raises(ValueError, match="missing keys .*rpn.head.objectness.weight"):
        detector.from_torchvision("fasterrcnn_resnet50_fpn", state)
