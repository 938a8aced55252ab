"""Ready-made assemblies of the parts, for the usual architectures."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn

import ops

from .anchors import AnchorGenerator
from ..weights.fine_tune import init_from, read_source, use_normalisation
from .parts import freeze as freeze_parts
from .backbones import ResNetC4, ResNetC5, ResNetFPN, ResNetRes5Head, VGG16BoxHead, VGG16Conv5
from .poolers import Pooler, RoIOp
from .rcnn import GeneralizedRCNN
from .roi_heads import (
    BoxBranch,
    BoxPredictor,
    MaskBranch,
    MaskHead,
    MaskPredictor,
    ROIHeads,
    TwoMLPHead,
)
from .rpn import RegionProposalNetwork, RPNHead
from .transform import ImageTransform

PYRAMID = ["p2", "p3", "p4", "p5"]
PYRAMID_STRIDES = [4, 8, 16, 32]


def roi_align_op(output_size: int, sampling_ratio: int = 2, aligned: bool = False,
                 mode: str = "avg") -> RoIOp:
    return functools.partial(ops.roi_align, output_size=output_size,
                             sampling_ratio=sampling_ratio, aligned=aligned, mode=mode)


FPN_ANCHOR_SIZES = (32, 64, 128, 256, 512)


def fpn_rcnn(num_classes: int, *, masks: bool = True, depth: int = 50,
             backbone_weights: str | None = None, trainable_stages: int = 3,
             norm: str = "frozen_bn", box_op: RoIOp | None = None, mask_op: RoIOp | None = None,
             backbone_width: int = 64, fpn_channels: int = 256, representation_size: int = 1024,
             mask_channels: int = 256, head_norm: bool = False, canonical_scale: float = 224,
             anchor_sizes: Sequence[int] = FPN_ANCHOR_SIZES, rpn: dict | None = None,
             roi_heads: dict | None = None,
             transform: ImageTransform | None = None, inference: dict | None = None,
             channels_last: bool = False, class_names: list[str] | None = None,
             category_ids: list[int] | None = None, init_weights: str | None = None,
             init_skip: Sequence[str] = (), init_class_map: str = "auto",
             freeze: Sequence[str] = ()) -> GeneralizedRCNN:
    """Faster R-CNN (masks=False) or Mask R-CNN with a ResNet-FPN backbone, by
    default in the configuration of torchvision's ``*_resnet50_fpn`` models.

    ``box_op`` / ``mask_op`` choose the ROI operators (default: roi_align,
    7x7 / 14x14, 2 samples per bin, aligned=False). The widths (the ResNet's
    ``backbone_width``, 64 as usual; FPN channels, box MLP, mask convolutions)
    and the anchor sizes (one per level, P2-P6) size the model down for small
    images or a CPU; ``head_norm=True`` adds
    BatchNorm to the pyramid, the box MLP and the mask convolutions, which
    training from scratch needs to converge quickly; ``canonical_scale`` is the
    box size pooled from P4 (FPN's level rule, 224 for ~800-pixel images;
    smaller images call for a smaller one); ``rpn`` / ``roi_heads``
    pass keyword arguments on to RegionProposalNetwork / ROIHeads (e.g.
    ``{"batch_size_per_image": 128}``); ``inference`` sets what inference keeps
    (GeneralizedRCNN.configure_inference: score and NMS thresholds, detections
    per image, mask threshold, RPN test top-n); ``channels_last`` runs the
    convolutions in NHWC memory format (GeneralizedRCNN.set_channels_last).
    ``init_weights`` starts the model from a trained detector (a torchvision
    state dict or a checkpoint of this project; ``init_skip``,
    ``init_class_map``: see detector.weights.fine_tune.init_from), keeping the
    normalisation its weights expect; ``freeze`` names parts that do not
    train (see detector.modeling.parts)."""
    if len(anchor_sizes) != len(FPN_ANCHOR_SIZES):
        raise ValueError(f"anchor_sizes needs one size per level P2-P6 "
                         f"({len(FPN_ANCHOR_SIZES)}), got {list(anchor_sizes)}")
    backbone = ResNetFPN(depth, backbone_weights, trainable_stages, norm, fpn_channels,
                         fpn_norm=head_norm, width=backbone_width)
    anchors = AnchorGenerator([(int(s),) for s in anchor_sizes], [(0.5, 1.0, 2.0)] * 5)
    proposal_net = RegionProposalNetwork(
        anchors, RPNHead(fpn_channels, anchors.num_anchors_per_location()[0]), **(rpn or {}))
    box_op = box_op or roi_align_op(7)
    box_size = _output_size(box_op)
    box_branch = BoxBranch(TwoMLPHead(fpn_channels * box_size[0] * box_size[1],
                                      representation_size, norm=head_norm),
                           BoxPredictor(representation_size, num_classes))
    mask_pooler = mask_branch = None
    if masks:
        mask_pooler = Pooler(mask_op or roi_align_op(14), PYRAMID_STRIDES, canonical_scale)
        mask_branch = MaskBranch(MaskHead(fpn_channels, (mask_channels,) * 4, norm=head_norm),
                                 MaskPredictor(mask_channels, mask_channels, num_classes))
    heads = ROIHeads(PYRAMID, Pooler(box_op, PYRAMID_STRIDES, canonical_scale), box_branch,
                     mask_pooler, mask_branch, **(roi_heads or {}))
    model = GeneralizedRCNN(backbone, proposal_net, heads, transform or ImageTransform(),
                            num_classes, class_names, category_ids)
    return _finish(model, init_weights, init_skip, init_class_map, freeze, inference,
                   channels_last)


def _finish(model: GeneralizedRCNN, init_weights: str | None, init_skip: Sequence[str],
            init_class_map: str, parts: Sequence[str], inference: dict | None,
            channels_last: bool) -> GeneralizedRCNN:
    """What every builder does last: the initial weights of a trained detector
    (the report goes to ``model.init_report``), the frozen parts, the
    inference settings and the memory format."""
    pretrained = set()
    # every name of a shared module (C4's res5 is the box head's and the mask head's)
    for name, module in model.named_modules(remove_duplicate=False):  # backbone_weights
        if getattr(module, "pretrained_from", None):
            pretrained.update(f"{name}.{k}" if name else k for k in module.state_dict())
    model.init_report = None
    if init_weights is not None:
        source = read_source(init_weights)
        report = init_from(model, source, init_skip, init_class_map)
        report.normalisation = use_normalisation(model, source)
        model.init_report = report
        pretrained.update(report.loaded)
        for name, module in model.named_modules(remove_duplicate=False):  # frozen, now loaded
            keys = [f"{name}.{k}" for k in module.state_dict()
                    if not k.endswith("num_batches_tracked")]
            if getattr(module, "untrained_frozen", None) and all(k in pretrained for k in keys):
                module.untrained_frozen = []
    model.untrained_frozen = freeze_parts(model, parts, pretrained) if parts else []
    return model.configure_inference(**(inference or {})).set_channels_last(channels_last)


class Res5MaskHead(nn.Module):
    """The C4 mask head: res5 on the pooled 14x14 features, unpooled (7x7).
    Pass the box head's ResNetRes5Head to share its weights, as in the paper."""

    def __init__(self, res5: ResNetRes5Head):
        super().__init__()
        self.res5 = res5
        self.out_channels = res5.out_channels

    def forward(self, x):
        return self.res5(x, pool=False)


SINGLE_LEVEL_ANCHOR_SIZES = (32, 64, 128, 256, 512)


def single_level_rcnn(backbone: nn.Module, box_head: nn.Module, num_classes: int, *,
                      masks: bool = True, mask_head: nn.Module | None = None,
                      box_op: RoIOp | None = None, mask_op: RoIOp | None = None,
                      mask_channels: int = 256,
                      anchor_sizes: Sequence[int] = SINGLE_LEVEL_ANCHOR_SIZES,
                      rpn: dict | None = None, roi_heads: dict | None = None,
                      transform: ImageTransform | None = None,
                      inference: dict | None = None, channels_last: bool = False,
                      class_names: list[str] | None = None,
                      category_ids: list[int] | None = None, init_weights: str | None = None,
                      init_skip: Sequence[str] = (), init_class_map: str = "auto",
                      freeze: Sequence[str] = ()) -> GeneralizedRCNN:
    """Faster/Mask R-CNN on a backbone with one feature map (C4, C5, VGG16), the
    setting of the Mask R-CNN paper's ROI operator ablations. ``box_head`` maps
    pooled features to vectors; ``mask_head`` maps pooled features to a map
    (default: four 3x3 convolutions of ``mask_channels``). ``anchor_sizes``
    are all on the one map; ``rpn`` / ``roi_heads`` pass keyword arguments on
    to RegionProposalNetwork / ROIHeads; ``inference``, ``channels_last``,
    ``init_weights``, ``init_skip``, ``init_class_map`` and ``freeze`` as for
    fpn_rcnn."""
    (name,) = backbone.strides
    stride = backbone.strides[name]
    anchors = AnchorGenerator([tuple(int(s) for s in anchor_sizes)], [(0.5, 1.0, 2.0)])
    rpn_args = dict(pre_nms_top_n={"training": 12000, "testing": 6000},
                    post_nms_top_n={"training": 2000, "testing": 1000})
    rpn_args.update(rpn or {})
    proposal_net = RegionProposalNetwork(
        anchors, RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0]),
        **rpn_args)
    box_branch = BoxBranch(box_head, BoxPredictor(box_head.out_channels, num_classes))
    mask_pooler = mask_branch = None
    if masks:
        mask_head = mask_head or MaskHead(backbone.out_channels, (mask_channels,) * 4)
        mask_pooler = Pooler(mask_op or roi_align_op(14), [stride])
        mask_branch = MaskBranch(mask_head, MaskPredictor(mask_head.out_channels, mask_channels,
                                                          num_classes))
    heads = ROIHeads([name], Pooler(box_op or roi_align_op(7), [stride]), box_branch,
                     mask_pooler, mask_branch, **(roi_heads or {}))
    model = GeneralizedRCNN(backbone, proposal_net, heads, transform or ImageTransform(),
                            num_classes, class_names, category_ids)
    return _finish(model, init_weights, init_skip, init_class_map, freeze, inference,
                   channels_last)


def c4_rcnn(num_classes: int, *, masks: bool = True, depth: int = 50,
            backbone_weights: str | None = None, trainable_stages: int = 3,
            norm: str = "frozen_bn", box_op: RoIOp | None = None, mask_op: RoIOp | None = None,
            backbone_width: int = 64, **heads) -> GeneralizedRCNN:
    """ResNet-C4 (stride 16) with res5 as the box head and, for masks, res5's 7x7
    map (shared weights) upsampled to 14x14 masks: the paper's Table 2c model.
    ROI operators pool 14x14 for both branches. ``norm="bn"`` keeps BatchNorm
    training (for training without ImageNet weights); ``backbone_width`` scales
    the ResNet (64 as usual, smaller from scratch). ``heads``: the keyword
    arguments of single_level_rcnn (anchor_sizes, rpn, roi_heads, transform,
    inference, channels_last, class_names, category_ids, init_weights,
    init_skip, init_class_map, freeze)."""
    res5 = ResNetRes5Head(depth, backbone_weights, norm, backbone_width)
    trunk = ResNetC4(depth, backbone_weights, trainable_stages, norm, backbone_width)
    return single_level_rcnn(
        trunk, res5, num_classes, masks=masks, mask_head=Res5MaskHead(res5),
        box_op=box_op or roi_align_op(14), mask_op=mask_op or roi_align_op(14), **heads)


def c5_rcnn(num_classes: int, *, masks: bool = True, depth: int = 50,
            backbone_weights: str | None = None, trainable_stages: int = 3,
            norm: str = "frozen_bn", box_op: RoIOp | None = None, mask_op: RoIOp | None = None,
            representation_size: int = 1024, backbone_width: int = 64,
            **heads) -> GeneralizedRCNN:
    """ResNet-C5 (stride 32, the paper's Table 2d setting) with a two-layer MLP
    box head on the pooled features. ``backbone_width`` and ``heads`` as for
    c4_rcnn (plus mask_channels)."""
    backbone = ResNetC5(depth, backbone_weights, trainable_stages, norm, backbone_width)
    box_size = _output_size(box_op or roi_align_op(7))
    head = TwoMLPHead(backbone.out_channels * box_size[0] * box_size[1], representation_size)
    return single_level_rcnn(backbone, head, num_classes, masks=masks, box_op=box_op,
                             mask_op=mask_op, **heads)


def vgg16_rcnn(num_classes: int, *, masks: bool = False, backbone_weights: str | None = None,
               trainable_from: int = 3, box_op: RoIOp | None = None,
               mask_op: RoIOp | None = None, **heads) -> GeneralizedRCNN:
    """Faster R-CNN's VGG16: conv5_3 (stride 16) and the fc6/fc7 box head (7x7
    pooling). ``trainable_from``: the first conv block that trains (3:
    conv1-conv2 frozen, as Faster R-CNN; 1 from scratch). ``heads`` as for
    c5_rcnn."""
    return single_level_rcnn(VGG16Conv5(backbone_weights, trainable_from),
                             VGG16BoxHead(backbone_weights),
                             num_classes, masks=masks, box_op=box_op, mask_op=mask_op, **heads)


def _output_size(op: RoIOp) -> tuple[int, int]:
    """The (h, w) an ROI op pools to, read off a call with no boxes."""
    probe = op(torch.zeros(1, 1, 1, 1), torch.zeros(0, 5), spatial_scale=1.0)
    return tuple(probe.shape[-2:])
