"""A tiny model learns a handful of images, for each ROI operator: the
classification, mask and objectness losses must fall by a large factor.
(The box regression loss is averaged over all sampled proposals and grows as
more of them become positive, so it is not a measure of learning here.)
Images are drawn by tests/shapes.py (rectangles and ellipses with exact
masks) so the test needs no dataset. About 20 s per operator on 2 CPU cores: marked slow, run by CI."""

import functools

import pytest
import torch

import detector
import ops
from detector.modeling.matching import BalancedSampler
from detector.modeling.transform import ImageTransform
from shapes import shapes_dataset

OPS = {
    "roi_pool": functools.partial(ops.roi_pool),
    "roi_warp": functools.partial(ops.roi_warp, sampling_ratio=2, mode="max"),
    "roi_align": functools.partial(ops.roi_align, sampling_ratio=2),
}


STEPS = 40


def tiny_model(op):
    """A half-width ResNet-18-FPN trained from scratch (so BatchNorm trains), small
    heads and budgets (the shape of the default run's model, so CI can afford it)."""
    torch.manual_seed(0)
    model = detector.fpn_rcnn(3, depth=18, trainable_stages=4, norm="bn", backbone_width=32,
                              fpn_channels=64, representation_size=256, mask_channels=64,
                              box_op=functools.partial(op, output_size=7),
                              mask_op=functools.partial(op, output_size=14),
                              transform=ImageTransform(min_size=None))
    model.rpn.post_nms_top_n = {"training": 300, "testing": 100}
    model.roi_heads.sampler = BalancedSampler(64, 0.25)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("op", list(OPS))
def test_tiny_model_overfits_a_few_images(op):
    samples = shapes_dataset()
    images, targets = (list(x) for x in zip(*samples))
    model = tiny_model(OPS[op]).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01,
                                momentum=0.9, weight_decay=1e-4)
    history = []
    for _ in range(STEPS):
        losses = model(images, targets)
        history.append({k: float(v.detach()) for k, v in losses.items()})
        optimizer.zero_grad()
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()

    def mean(key, part):
        return sum(h[key] for h in part) / len(part)

    for key, factor in (("loss_classifier", 3), ("loss_mask", 5), ("loss_rpn_objectness", 5)):
        first, last = mean(key, history[:3]), mean(key, history[-3:])
        print(f"{op}: {key} {first:.3f} -> {last:.3f} ({first / last:.1f}x)")
        assert last < first / factor, f"{op}: {key} fell only from {first:.3f} to {last:.3f}"
