"""BatchNorm folded into the convolutions (model.fuse()): the same features and
detections (boxes, scores, labels, masks, one to one) as the unfused model, no
norm left in the ResNet, and a fused model refuses to train."""

import copy

import pytest
import torch
from torchvision.ops.misc import FrozenBatchNorm2d

import detector
from detector.modeling.fuse import fold_batchnorm

from detections import match


def _with_statistics(model):
    """Random, non-trivial BatchNorm statistics (fresh models have 0 / 1)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (FrozenBatchNorm2d, torch.nn.BatchNorm2d)):
                n = m.weight.shape[0]
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model


def _norms(module):
    return [m for m in module.modules() if isinstance(m, (FrozenBatchNorm2d, torch.nn.BatchNorm2d))]


def _same_detections_apart_from_the_cut(ours: dict, theirs: dict, limit: int,
                                        margin: float, **tolerances) -> None:
    """The same detections, one to one, in any order (tests/detections.py):
    every one of theirs, except those whose score is within ``margin`` of the
    lowest kept when the ``limit`` per image cut the list (float rounding may
    put either of two near-equal scores last), matched to one of ours with the
    same label, boxes, score and mask within ``tolerances``; as many of each."""
    assert len(ours["boxes"]) == len(theirs["boxes"])
    cut = float(theirs["scores"].min()) + margin if len(theirs["boxes"]) == limit else -1.0
    clear = theirs["scores"] > cut
    assert clear.sum() >= 0.9 * limit, int(clear.sum())  # the band at the cut is narrow
    theirs = {k: v[clear] for k, v in theirs.items()}
    pairs = match(ours, theirs, min_iou=0.99, max_offset=tolerances.get("boxes", 0.0))
    assert len(pairs) == len(theirs["boxes"]), f"{len(theirs['boxes']) - len(pairs)} unmatched"
    o, t = (torch.tensor(i) for i in zip(*pairs))
    for key, atol in tolerances.items():
        torch.testing.assert_close(ours[key][o], theirs[key][t], rtol=0, atol=atol, msg=key)


@pytest.mark.parametrize("build, sharpen", [
    (lambda: detector.fpn_rcnn(4, depth=18, backbone_width=16, fpn_channels=32,
                               representation_size=64, mask_channels=32), 1.0),
    # this model's features are larger: a smaller classifier keeps the scores apart
    (lambda: detector.fpn_rcnn(4, depth=50, backbone_width=16, fpn_channels=32,
                               representation_size=64, mask_channels=32, norm="bn"), 0.1),
    (lambda: detector.c4_rcnn(4, depth=18, backbone_width=16), 1.0),
], ids=["r18_fpn_frozen", "r50_fpn_bn", "r18_c4"])
def test_same_features_and_detections(build, sharpen):
    torch.manual_seed(0)
    plain = _with_statistics(build()).eval()
    with torch.no_grad():
        plain.roi_heads.box_branch.predictor.cls_score.weight.mul_(sharpen)
    fused = copy.deepcopy(plain).fuse()
    assert _norms(plain) and not _norms(fused.backbone)
    x = torch.rand(1, 3, 96, 128)
    ours, theirs = fused.backbone(x), plain.backbone(x)
    for key in theirs:  # float32 rounding, relative to the features' scale
        scale = float(theirs[key].detach().abs().max())
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-4 * scale, msg=key)
    images = [torch.rand(3, 120, 160), torch.rand(3, 100, 90)]
    limit = 100
    for model in (plain, fused):
        model.configure_inference(score_thresh=0.0, detections_per_image=limit)
    for a, b in zip(plain.predict(images), fused.predict(images)):
        assert len(a["boxes"]) > 50  # not vacuous
        # measured here: scores within 1.3e-5, boxes 9e-4 px, mask probabilities 2.1e-3
        _same_detections_apart_from_the_cut(b, a, limit, margin=1e-4, scores=1e-4, boxes=1e-2,
                                            labels=0, masks=1e-2)


def test_a_fused_model_refuses_to_train():
    model = detector.fpn_rcnn(4, depth=18, backbone_width=16, fpn_channels=32,
                              representation_size=64, mask_channels=32).fuse()
    model.train()
    image = torch.rand(3, 64, 64)
    target = {"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]), "labels": torch.tensor([1]),
              "masks": torch.ones(1, 64, 64, dtype=torch.uint8)}
    with pytest.raises(RuntimeError, match="fused for inference"):
        model([image], [target])


def test_a_training_batchnorm_is_not_folded():
    conv_bn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="call model.eval"):
        fold_batchnorm(conv_bn)
    assert fold_batchnorm(conv_bn.eval()) == 1
    assert isinstance(conv_bn[1], torch.nn.Identity)
