"""A tiny model learns a handful of images, for each ROI operator: the
classification, mask and objectness losses must fall by a large factor.
(The box regression loss is averaged over all sampled proposals and grows as
more of them become positive, so it is not a measure of learning here.)
Images are drawn here (rectangles and ellipses with exact masks) so the test
needs no dataset. About a minute per operator on 2 CPU cores: marked slow."""

import functools

import pytest
import torch

import detector
import ops
from detector.matching import BalancedSampler
from detector.transform import ImageTransform

OPS = {
    "roi_pool": functools.partial(ops.roi_pool),
    "roi_warp": functools.partial(ops.roi_warp, sampling_ratio=2, mode="max"),
    "roi_align": functools.partial(ops.roi_align, sampling_ratio=2),
}


STEPS = 40


def shapes_dataset(count=4, height=96, width=128, seed=0):
    """Images with one rectangle (label 1) and one ellipse (label 2) each."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    samples = []
    for _ in range(count):
        image = torch.rand(3, height, width, generator=g) * 0.2
        masks, boxes = [], []
        for label in (1, 2):
            h, w = (int(v) for v in torch.randint(24, 48, (2,), generator=g))
            y0 = int(torch.randint(0, height - h, (1,), generator=g))
            x0 = int(torch.randint(0, width - w, (1,), generator=g))
            if label == 1:
                mask = (ys >= y0) & (ys < y0 + h) & (xs >= x0) & (xs < x0 + w)
            else:
                cy, cx = y0 + (h - 1) / 2, x0 + (w - 1) / 2
                mask = ((ys - cy) / (h / 2)) ** 2 + ((xs - cx) / (w / 2)) ** 2 <= 1
            colour = torch.rand(3, 1, 1, generator=g) * 0.6 + 0.4
            image = torch.where(mask, colour, image)
            row, col = torch.nonzero(mask, as_tuple=True)
            boxes.append([col.min(), row.min(), col.max() + 1, row.max() + 1])
            masks.append(mask)
        samples.append((image, {"boxes": torch.tensor(boxes, dtype=torch.float32),
                                "labels": torch.tensor([1, 2]),
                                "masks": torch.stack(masks).to(torch.uint8)}))
    return samples


def tiny_model(op):
    """ResNet-18-FPN trained from scratch (so BatchNorm trains), small budgets."""
    torch.manual_seed(0)
    model = detector.fpn_rcnn(3, depth=18, trainable_stages=4, norm="bn",
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
        assert last < first / factor, f"{op}: {key} fell only from {first:.3f} to {last:.3f}"
