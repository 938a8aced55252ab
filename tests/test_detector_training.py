"""Training mode of the FPN model on tiny inputs: named losses, gradients,
images without objects, and the checks at the model's edge."""

import pytest
import torch

import detector
from detector.modeling.transform import ImageTransform


def _model(masks=True):
    torch.manual_seed(0)
    return detector.fpn_rcnn(4, masks=masks, depth=18, trainable_stages=5,
                             transform=ImageTransform(min_size=None))


def _sample(objects=True):
    g = torch.Generator().manual_seed(2)
    image = torch.rand(3, 96, 128, generator=g)
    if not objects:
        return image, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                       "masks": torch.zeros(0, 96, 128, dtype=torch.uint8)}
    boxes = torch.tensor([[10.0, 12.0, 50.0, 60.0], [60.0, 30.0, 120.0, 90.0]])
    masks = torch.zeros(2, 96, 128, dtype=torch.uint8)
    masks[0, 12:60, 10:50] = 1
    masks[1, 30:90, 60:120] = 1
    return image, {"boxes": boxes, "labels": torch.tensor([1, 3]), "masks": masks}


@pytest.mark.parametrize("masks", [True, False])
def test_training_step_returns_named_finite_losses(masks):
    model = _model(masks).train()
    images, targets = zip(*[_sample(), _sample(objects=False)])
    losses = model(list(images), list(targets))
    expected = {"loss_rpn_objectness", "loss_rpn_box", "loss_classifier", "loss_box_reg"}
    assert set(losses) == expected | ({"loss_mask"} if masks else set())
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.roi_heads.box_branch.predictor.cls_score.weight.grad.abs().sum() > 0
    if masks:
        assert model.roi_heads.mask_branch.predictor.logits.weight.grad.abs().sum() > 0


def test_eval_returns_detections_in_input_coordinates():
    model = _model().eval()
    image, _ = _sample()
    (result,) = model.predict([image])
    assert set(result) == {"boxes", "labels", "scores", "masks"}
    assert result["masks"].shape[1:] == (1, 96, 128)
    with pytest.raises(RuntimeError, match="eval mode"):
        model.train().predict([image])


@pytest.mark.parametrize("change, message", [
    (lambda t: t.update(boxes=torch.tensor([[10.0, 12.0, 5.0, 60.0], [60.0, 30.0, 120.0, 90.0]])),
     r"targets\[0\]\['boxes'\]\[0\] = .* is degenerate"),
    (lambda t: t.update(boxes=torch.tensor([[10.0, 12.0, 50.0, 60.0], [60.0, 30.0, 130.0, 90.0]])),
     r"targets\[0\]\['boxes'\]\[1\] = .* lies outside the 96x128 image"),
    (lambda t: t.update(labels=torch.tensor([1, 4])), r"labels'\] must be in \[1, 3\]"),
    (lambda t: t.update(labels=torch.tensor([1.0, 2.0])), r"labels'\] must be int64"),
    (lambda t: t.update(masks=torch.zeros(2, 50, 50, dtype=torch.uint8)),
     r"masks'\] must be \[2, 96, 128\], got \(2, 50, 50\)"),
])
def test_bad_targets_are_named(change, message):
    model = _model().train()
    image, target = _sample()
    change(target)
    with pytest.raises(ValueError, match=message):
        model([image], [target])


def test_bad_images_are_named():
    model = _model().eval()
    with pytest.raises(ValueError, match=r"images\[0\] must be a \[3, H, W\] tensor"):
        model.predict([torch.rand(1, 3, 32, 32)])
    with pytest.raises(TypeError, match=r"images\[0\] must be a float tensor"):
        model.predict([torch.zeros(3, 32, 32, dtype=torch.uint8)])


def _op(name):
    import functools

    import ops
    if name == "roi_pool":
        return functools.partial(ops.roi_pool, output_size=14)
    if name == "roi_warp":
        return functools.partial(ops.roi_warp, output_size=14, sampling_ratio=2, mode="avg")
    return functools.partial(ops.roi_align, output_size=14, sampling_ratio=2, aligned=True)


VARIANTS = {
    # res5 runs on every ROI: a few ROIs keep the C4 cases short (a minute each with
    # torchvision's 512 sampled and 1000 proposals) and still train and predict each op
    "c4": lambda op: detector.c4_rcnn(4, depth=18, box_op=op, mask_op=op,
                                      roi_heads={"batch_size_per_image": 64},
                                      rpn={"post_nms_top_n": {"training": 200, "testing": 100}},
                                      transform=ImageTransform(min_size=None)),
    "c5": lambda op: detector.c5_rcnn(4, depth=18, representation_size=128,
                                      transform=ImageTransform(min_size=None)),
    "vgg16": lambda op: detector.vgg16_rcnn(4, masks=True, transform=ImageTransform(min_size=None)),
}


@pytest.mark.parametrize("variant, op", [("c4", "roi_pool"), ("c4", "roi_warp"),
                                         ("c4", "roi_align"), ("c5", None), ("vgg16", None)])
def test_every_backbone_variant_trains_and_predicts(variant, op):
    torch.manual_seed(0)
    model = VARIANTS[variant](_op(op) if op else None)
    images, targets = zip(*[_sample(), _sample(objects=False)])
    losses = model.train()(list(images), list(targets))
    assert {"loss_mask", "loss_classifier"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    (result,) = model.eval().predict([images[0]])
    assert result["boxes"].shape[1] == 4 and result["masks"].shape[1:] == (1, 96, 128)
