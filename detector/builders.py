"""Ready-made assemblies of the parts (the Hydra configs build the same trees)."""

from __future__ import annotations

import functools

import ops

from .anchors import AnchorGenerator
from .backbones.fpn import ResNetFPN
from .poolers import Pooler, RoIOp
from .rcnn import GeneralizedRCNN
from .roi_heads import BoxBranch, BoxPredictor, MaskBranch, MaskHead, MaskPredictor, ROIHeads
from .roi_heads import TwoMLPHead
from .rpn import RegionProposalNetwork, RPNHead
from .transform import ImageTransform

PYRAMID = ["p2", "p3", "p4", "p5"]
PYRAMID_STRIDES = [4, 8, 16, 32]


def roi_align_op(output_size: int, sampling_ratio: int = 2, aligned: bool = False,
                 mode: str = "avg") -> RoIOp:
    return functools.partial(ops.roi_align, output_size=output_size,
                             sampling_ratio=sampling_ratio, aligned=aligned, mode=mode)


def fpn_rcnn(num_classes: int, *, masks: bool = True, depth: int = 50,
             backbone_weights: str | None = None, trainable_stages: int = 3,
             box_op: RoIOp | None = None, mask_op: RoIOp | None = None,
             transform: ImageTransform | None = None,
             class_names: list[str] | None = None) -> GeneralizedRCNN:
    """Faster R-CNN (masks=False) or Mask R-CNN with a ResNet-FPN backbone, in
    the configuration of torchvision's ``*_resnet50_fpn`` models. ``box_op`` /
    ``mask_op`` choose the ROI operators (default: roi_align, 7x7 / 14x14,
    2 samples per bin, aligned=False)."""
    backbone = ResNetFPN(depth, backbone_weights, trainable_stages)
    anchors = AnchorGenerator([(32,), (64,), (128,), (256,), (512,)], [(0.5, 1.0, 2.0)] * 5)
    rpn = RegionProposalNetwork(anchors, RPNHead(backbone.out_channels,
                                                 anchors.num_anchors_per_location()[0]))
    box_op = box_op or roi_align_op(7)
    box_size = _output_size(box_op)
    box_branch = BoxBranch(TwoMLPHead(backbone.out_channels * box_size[0] * box_size[1], 1024),
                           BoxPredictor(1024, num_classes))
    mask_pooler = mask_branch = None
    if masks:
        mask_pooler = Pooler(mask_op or roi_align_op(14), PYRAMID_STRIDES)
        mask_branch = MaskBranch(MaskHead(backbone.out_channels, (256, 256, 256, 256)),
                                 MaskPredictor(256, 256, num_classes))
    roi_heads = ROIHeads(PYRAMID, Pooler(box_op, PYRAMID_STRIDES), box_branch,
                         mask_pooler, mask_branch)
    return GeneralizedRCNN(backbone, rpn, roi_heads, transform or ImageTransform(),
                           num_classes, class_names)


def _output_size(op: RoIOp) -> tuple[int, int]:
    import torch

    probe = op(torch.zeros(1, 1, 1, 1), torch.zeros(0, 5), spatial_scale=1.0)
    return tuple(probe.shape[-2:])
