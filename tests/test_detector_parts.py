"""Shared primitives against torchvision's implementations as oracles."""

import pytest
import torch
from torch import nn
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchors
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops.poolers import LevelMapper

import detector
from detector.modeling.anchors import AnchorGenerator
from detector.modeling.boxes import BoxCoder
from detector.modeling.matching import BalancedSampler, Matcher
from detector.modeling.poolers import pyramid_levels
from detector.modeling.roi_heads.paste import paste_masks


def _boxes(n, seed, size=300.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 2 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_anchors_match_torchvision():
    sizes, ratios = ((32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 3
    feature_sizes = [(24, 32), (12, 16), (6, 8)]
    ours = AnchorGenerator(sizes, ratios)((96, 128), feature_sizes, torch.float32, "cpu")
    maps = [torch.zeros(1, 1, h, w) for h, w in feature_sizes]
    theirs = TvAnchors(sizes, ratios)(ImageList(torch.zeros(1, 3, 96, 128), [(96, 128)]), maps)[0]
    assert torch.equal(ours, theirs)


def test_box_coder_matches_torchvision():
    weights = (10.0, 10.0, 5.0, 5.0)
    refs, gts = _boxes(50, 0), _boxes(50, 1)
    ours, theirs = BoxCoder(weights), tv_utils.BoxCoder(weights)
    torch.testing.assert_close(ours.encode(gts, refs), theirs.encode_single(gts, refs))
    deltas = torch.randn(50, 12, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(ours.decode(deltas, refs),
                               theirs.decode_single(deltas, refs).view(50, 3, 4))
    torch.testing.assert_close(ours.decode(ours.encode(gts, refs), refs)[:, 0], gts)


def test_pyramid_levels_match_torchvision():
    boxes = torch.cat([_boxes(100, 3, 50.0), _boxes(100, 4, 1200.0)])
    theirs = LevelMapper(2, 5)([boxes])
    assert torch.equal(pyramid_levels(boxes, 2, 5), theirs)


def test_paste_masks_matches_torchvision():
    g = torch.Generator().manual_seed(5)
    masks = torch.rand(12, 1, 28, 28, generator=g)
    boxes = torch.cat([_boxes(10, 6, 100.0), torch.tensor([[-20.0, -5, 40, 30],
                                                           [90.0, 70, 140, 130]])])
    ours = paste_masks(masks, boxes, (110, 130))
    theirs = paste_masks_in_image(masks, boxes, (110, 130))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    assert paste_masks(masks[:0], boxes[:0], (10, 12)).shape == (0, 1, 10, 12)


@pytest.mark.parametrize("low_quality", [False, True])
def test_matcher_matches_torchvision(low_quality):
    iou = torch.rand(7, 300, generator=torch.Generator().manual_seed(7))
    ours = Matcher(0.7, 0.3, low_quality)(iou)
    theirs = tv_utils.Matcher(0.7, 0.3, low_quality)(iou)
    assert torch.equal(ours, theirs)
    assert torch.equal(Matcher(0.5, 0.5)(torch.zeros(0, 5)), torch.full((5,), -1))


def test_sampler_respects_budget_and_fraction():
    labels = torch.cat([torch.ones(100, dtype=torch.int64), torch.zeros(1000, dtype=torch.int64),
                        torch.full((50,), -1)])
    (pos,), (neg,) = BalancedSampler(256, 0.25)([labels])
    assert pos.sum() == 64 and neg.sum() == 192
    assert not (pos & neg).any() and (labels[pos] == 1).all() and (labels[neg] == 0).all()
    (pos,), (neg,) = BalancedSampler(256, 0.25)([torch.zeros(10, dtype=torch.int64)])
    assert pos.sum() == 0 and neg.sum() == 10


def test_head_norm_puts_batchnorm_in_pyramid_and_heads():
    plain = detector.fpn_rcnn(3, depth=18, norm="bn", fpn_channels=32, representation_size=64,
                              mask_channels=32)
    normed = detector.fpn_rcnn(3, depth=18, norm="bn", fpn_channels=32, representation_size=64,
                               mask_channels=32, head_norm=True)

    def count(module):
        return sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in module.modules())

    assert count(normed.backbone.fpn) == 8 and count(plain.backbone.fpn) == 0  # 4 inner + 4 out
    assert count(normed.roi_heads.box_branch) == 2 and count(normed.roi_heads.mask_branch) == 4
    assert count(plain.roi_heads.box_branch) == count(plain.roi_heads.mask_branch) == 0
    normed.eval()
    with torch.no_grad():
        (out,) = normed([torch.rand(3, 64, 96)])
    assert {"boxes", "labels", "scores", "masks"} <= set(out)
