"""The same torchvision weights, images and targets give torchvision's training
losses: every term of the assembled Mask R-CNN (RPN objectness and box
regression, classifier, box regression, mask), to 1e-5.

torchvision is the independent oracle: its matching, sampling, target encoding
and normalization were written elsewhere. Two things are made deterministic,
since the two implementations draw their random samples differently:

- sampling: both samplers take every labelled anchor and proposal (a batch far
  larger than the candidates), so no random choice is left;
- proposals: the RPN's proposals of the torchvision model are handed to this
  project's ROI heads in place of its own (both RPNs are still run and their
  losses compared; their proposals are checked to agree as sets), so a near-tie
  in NMS cannot change which proposals the heads see.

Both models read the images at their own size (a resize by 1) and normalize
them with ImageNet's statistics, as torchvision's transform does.
"""

import torch
from torchvision.models import resnet50
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.misc import FrozenBatchNorm2d

import detector
from detector.modeling.matching import BalancedSampler

NUM_CLASSES = 5
SIZE = (64, 80)  # the shorter side and the longer side cap: every image below has scale 1
EVERYTHING = 1_000_000  # a sample size larger than all anchors and proposals
PROPOSALS = 200  # per image after the RPN's NMS (fewer than its 2000: a fast test)

# torchvision's loss name → the project's
NAMES = {"loss_objectness": "loss_rpn_objectness", "loss_rpn_box_reg": "loss_rpn_box",
         "loss_classifier": "loss_classifier", "loss_box_reg": "loss_box_reg",
         "loss_mask": "loss_mask"}


def _unit_outputs(model: MaskRCNN, layers: list[torch.nn.Module]) -> None:
    """Rescales each layer's weight and bias so that its output has unit
    standard deviation on random images (its first call; one pass in order, so
    each layer sees the rescaled ones before it). A fresh model's features
    grow to the thousands through fifty layers without normalization (frozen
    BatchNorm with the statistics 0 and 1), which saturates every loss and
    leaves a handful of proposals, all clipped to the image."""
    done = set()

    def rescale(module, inputs, output):
        if module not in done:
            done.add(module)
            scale = float(output.std())
            module.weight.div_(scale)
            module.bias.div_(scale)
            return output / scale
        return None

    hooks = [layer.register_forward_hook(rescale) for layer in layers]
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        model.eval()([torch.rand(3, *SIZE, generator=g) for _ in range(2)])
    for hook in hooks:
        hook.remove()


def _torchvision_model() -> MaskRCNN:
    """maskrcnn_resnet50_fpn's architecture with seeded random weights (frozen
    BatchNorm and three trainable stages, as the pretrained model has), its
    layers scaled so that every loss term is of order one."""
    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3)
    model = MaskRCNN(backbone, num_classes=NUM_CLASSES, min_size=SIZE[0], max_size=SIZE[1],
                     rpn_batch_size_per_image=EVERYTHING, box_batch_size_per_image=EVERYTHING,
                     rpn_post_nms_top_n_train=PROPOSALS, box_detections_per_img=10)
    fpn, heads = model.backbone.fpn, model.roi_heads
    hidden = [*(block[0] for block in [*fpn.inner_blocks, *fpn.layer_blocks]),
              model.rpn.head.conv[0][0], heads.box_head.fc6, heads.box_head.fc7,
              *(block[0] for block in heads.mask_head), heads.mask_predictor.conv5_mask]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        # predictors: outputs of about (their std) on unit inputs
        predictors = ((model.rpn.head.cls_logits, 1.5), (model.rpn.head.bbox_pred, 0.3),
                      (heads.box_predictor.cls_score, 1.5), (heads.box_predictor.bbox_pred, 0.3),
                      (heads.mask_predictor.mask_fcn_logits, 1.5))
        for layer, std in predictors:
            fan_in = layer.weight[0].numel()
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * std / fan_in ** 0.5)
            layer.bias.zero_()
        _unit_outputs(model, hidden)
    return model.train()


def _ours(theirs: MaskRCNN):
    model = detector.from_torchvision("maskrcnn_resnet50_fpn", theirs.state_dict())
    model.transform = model.transform.with_sizes(*SIZE)
    model.rpn.post_nms_top_n["training"] = PROPOSALS
    model.rpn.sampler = BalancedSampler(EVERYTHING, theirs.rpn.fg_bg_sampler.positive_fraction)
    model.roi_heads.sampler = BalancedSampler(
        EVERYTHING, theirs.roi_heads.fg_bg_sampler.positive_fraction)
    return model.train()


def _data():
    """Two images of different widths (so the batch is padded), objects of
    several sizes, one image with a single object."""
    g = torch.Generator().manual_seed(2)
    images = [torch.rand(3, 64, 80, generator=g), torch.rand(3, 64, 72, generator=g)]
    boxes = [torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.5, 20.0, 76.0, 60.0],
                           [50.0, 2.0, 62.0, 14.0]]),
             torch.tensor([[10.0, 8.0, 60.0, 40.0]])]
    targets = []
    for image, b, labels in zip(images, boxes, ([1, 3, 4], [2])):
        masks = torch.zeros(len(b), *image.shape[-2:], dtype=torch.uint8)
        for mask, (x1, y1, x2, y2) in zip(masks, b.round().int().tolist()):
            mask[y1:y2, x1:x2] = 1
            mask[y1:(y1 + y2) // 2, x1:(x1 + x2) // 2] = 0  # an L shape, not the box
        targets.append({"boxes": b, "labels": torch.tensor(labels), "masks": masks})
    return images, targets


def _sorted_rows(boxes: torch.Tensor) -> torch.Tensor:
    """The rows in lexicographic order (a canonical order for comparing sets)."""
    for column in reversed(range(boxes.shape[1])):
        boxes = boxes[torch.argsort(boxes[:, column], stable=True)]
    return boxes


def test_same_training_losses_as_torchvision():
    theirs_model = _torchvision_model()
    ours_model = _ours(theirs_model)
    images, targets = _data()

    proposals = {}
    theirs_rpn, ours_rpn = theirs_model.rpn.forward, ours_model.rpn.forward

    def record(*args, **kwargs):
        boxes, losses = theirs_rpn(*args, **kwargs)
        proposals["theirs"] = [b.detach().clone() for b in boxes]
        return boxes, losses

    def replay(*args, **kwargs):
        boxes, losses = ours_rpn(*args, **kwargs)
        proposals["ours"] = boxes
        return [b.clone() for b in proposals["theirs"]], losses

    theirs_model.rpn.forward, ours_model.rpn.forward = record, replay
    torch.manual_seed(3)
    theirs = theirs_model([i.clone() for i in images], [dict(t) for t in targets])
    torch.manual_seed(4)  # another random state: nothing may depend on it
    ours = ours_model([i.clone() for i in images], [dict(t) for t in targets])

    assert set(NAMES.values()) == set(ours)
    for name, value in theirs.items():
        want, got = float(value.detach()), float(ours[NAMES[name]].detach())
        assert abs(want) > 1e-3, (name, want)  # not a vacuous term
        assert abs(got - want) <= 1e-5 * max(abs(want), 1.0), (name, got, want)
    # the RPNs agree on the proposals too (as sets: their order within NMS ties may differ)
    for o, t in zip(proposals["ours"], proposals["theirs"]):
        assert len(o) == len(t) == PROPOSALS
        torch.testing.assert_close(_sorted_rows(o), _sorted_rows(t), rtol=0, atol=1e-3)

