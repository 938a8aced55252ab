"""Channels-last models (model.set_channels_last(), model.channels_last in the
configs): NHWC feature maps from the batch onwards, and the same features,
detections, losses and gradients as the plain NCHW model."""

import copy

import pytest
import torch

import detector
from detector.modeling.transform import ImageTransform

from detections import match_stronger_half

# resized to a shorter side of 224 (not 1:1: the images below are 90-120 pixels high), and
# C4's res5, which runs on every ROI, on fewer of them than torchvision's 512 and 1000
C4_ROIS = {"roi_heads": {"batch_size_per_image": 128},
           "rpn": {"post_nms_top_n": {"training": 300, "testing": 300}}}
BUILDS = {
    "r18_fpn_frozen": lambda: detector.fpn_rcnn(4, depth=18, backbone_width=16, fpn_channels=32,
                                                representation_size=64, mask_channels=32,
                                                transform=ImageTransform(224, 320)),
    "r50_fpn_bn": lambda: detector.fpn_rcnn(4, depth=50, backbone_width=16, fpn_channels=32,
                                            representation_size=64, mask_channels=32, norm="bn",
                                            head_norm=True, transform=ImageTransform(224, 320)),
    "r18_c4": lambda: detector.c4_rcnn(4, depth=18, backbone_width=16,
                                       transform=ImageTransform(224, 320), **C4_ROIS),
    "r18_c5": lambda: detector.c5_rcnn(4, depth=18, backbone_width=16, representation_size=64,
                                       mask_channels=32, transform=ImageTransform(224, 320)),
}


def _pair(name):
    torch.manual_seed(0)
    plain = BUILDS[name]()
    nhwc = copy.deepcopy(plain).set_channels_last()
    return plain, nhwc


def _images():
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 120, 160, generator=g), torch.rand(3, 100, 90, generator=g)]


def _targets(images):
    targets = []
    for image in images:
        h, w = image.shape[-2:]
        boxes = torch.tensor([[4.0, 6.0, w * 0.6, h * 0.7], [w * 0.3, h * 0.2, w - 2.0, h - 3.0]])
        masks = torch.zeros(2, h, w, dtype=torch.uint8)
        for m, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
            m[y1:y2, x1:x2] = 1
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 3]), "masks": masks})
    return targets


def _close(a, b, rel=1e-4, msg=""):
    scale = max(float(b.detach().abs().max()), 1e-6)
    torch.testing.assert_close(a, b, rtol=0, atol=rel * scale, msg=msg)


@pytest.mark.parametrize("name", BUILDS)
def test_nhwc_features_and_same_detections(name):
    plain, nhwc = _pair(name)
    plain.eval()
    nhwc.eval()
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in nhwc.parameters() if p.dim() == 4)
    batch = torch.rand(1, 3, 96, 128)
    ours, theirs = nhwc.backbone(batch.contiguous(memory_format=torch.channels_last)), \
        plain.backbone(batch)
    for key in theirs:
        assert ours[key].is_contiguous(memory_format=torch.channels_last), key
        _close(ours[key], theirs[key], msg=key)
    images = _images()
    plain.configure_inference(score_thresh=0.0)
    nhwc.configure_inference(score_thresh=0.0)
    for a, b in zip(plain.predict(images), nhwc.predict(images)):
        assert len(a["boxes"]) == len(b["boxes"]) > 0
        pairs, top = match_stronger_half(b, a)
        assert len(pairs) >= 0.9 * len(top["boxes"])
        if "masks" in a:
            for i, j in pairs[:20]:  # matched detections have the same mask probabilities
                _close(b["masks"][i], top["masks"][j], rel=1e-3)


@pytest.mark.parametrize("name", ["r18_fpn_frozen", "r50_fpn_bn", "r18_c4"])
def test_same_losses_and_gradients(name):
    """In float64, so that no rounding difference can reorder proposals: the
    same sampled boxes, hence the same losses and gradients to 1e-9."""
    plain, nhwc = _pair(name)
    images = [image[:, :80, :96].double() for image in _images()]
    targets = _targets(images)
    results = []
    for model in (plain, nhwc):
        model.double().train()
        torch.manual_seed(5)
        losses = model(images, targets)
        sum(losses.values()).backward()
        results.append(losses)
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in nhwc.parameters() if p.dim() == 4)
    for key in results[0]:
        _close(results[1][key].detach(), results[0][key].detach(), rel=1e-9, msg=key)
    grads = dict(plain.named_parameters())
    assert any(p.grad is not None for p in nhwc.parameters())
    for key, p in nhwc.named_parameters():
        assert (p.grad is None) == (grads[key].grad is None), key
        if p.grad is not None:
            _close(p.grad, grads[key].grad, rel=1e-9, msg=key)
    for (key, a), b in zip(nhwc.named_buffers(), plain.buffers()):  # BatchNorm statistics
        if a.is_floating_point():
            _close(a, b, rel=1e-9, msg=key)


def test_fused_and_saved_channels_last_models():
    plain, nhwc = _pair("r18_fpn_frozen")
    fused = copy.deepcopy(nhwc).fuse()
    assert fused.channels_last and all(
        p.is_contiguous(memory_format=torch.channels_last)
        for p in fused.parameters() if p.dim() == 4)
    images = _images()[:1]
    for model in (plain, nhwc, fused):
        model.eval().configure_inference(score_thresh=0.0)
    reference = plain.predict(images)[0]
    pairs, top = match_stronger_half(fused.predict(images)[0], reference)
    assert len(pairs) >= 0.9 * len(top["boxes"])
    # a channels-last model's weights load into a plain one (and back) unchanged
    restored = BUILDS["r18_fpn_frozen"]()
    restored.load_state_dict(nhwc.state_dict())
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[key], value, rtol=0, atol=0, msg=key)
    nhwc.set_channels_last(False)
    assert not nhwc.channels_last and all(p.is_contiguous() for p in nhwc.parameters())
