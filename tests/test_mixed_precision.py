"""Mixed precision keeps box geometry in float32: under autocast the features
and the heads' outputs are float16/bfloat16, but anchors, decoding, matching,
regression targets, FPN levels, the boxes given to the ROI operators and the
mask paste are computed as in float32, so training samples the same targets
and detections come out in float32."""

import functools
from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from torchvision.models.detection import _utils as tv_utils
from torchvision.ops.poolers import LevelMapper

import detector
import detector.modeling.poolers
from detector.modeling.boxes import BoxCoder
from detector.modeling.poolers import Pooler, pyramid_levels
from detector.modeling.roi_heads.paste import paste_masks
from detector.training import DetectionModule, SyntheticDataModule
from detector.modeling.transform import ImageTransform

from conftest import SPEC

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")

DEVICES = [
    pytest.param("cpu", torch.bfloat16, id="cpu-bf16"),
    pytest.param("cuda", torch.float16, id="cuda-fp16", marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]),
]


def test_pyramid_levels_of_float16_boxes_do_not_overflow():
    # sides 256 to 447 px belong to P4 (floor(4 + log2(side / 224)) = 4), but their
    # area (65,536 px^2 and more) is beyond float16's largest value, 65,504
    sides = torch.tensor([32.0, 150, 224, 255, 256, 300, 447, 448, 900])
    boxes = torch.stack([torch.full_like(sides, 8), torch.full_like(sides, 16),
                         8 + sides, 16 + sides], dim=1)  # integers: exact in float16
    expected = torch.tensor([2, 3, 4, 4, 4, 4, 4, 5, 5]) - 2  # by hand, as index from P2
    assert torch.equal(pyramid_levels(boxes, 2, 5), expected)
    assert torch.equal(pyramid_levels(boxes.half(), 2, 5), expected)
    assert torch.equal(pyramid_levels(boxes.half(), 2, 5), LevelMapper(2, 5)([boxes.half()]))


def test_box_coder_decodes_low_precision_deltas_in_float32():
    # references near 1,100 px, where bfloat16 spaces values 8 px apart
    g = torch.Generator().manual_seed(0)
    xy = 1000 + torch.rand(40, 2, generator=g) * 100
    references = torch.cat([xy, xy + 20 + torch.rand(40, 2, generator=g) * 80], dim=1)
    deltas = (torch.randn(40, 8, generator=g) * 0.1).bfloat16()
    weights = (10.0, 10.0, 5.0, 5.0)
    boxes = BoxCoder(weights).decode(deltas, references)
    assert boxes.dtype == torch.float32
    expected = tv_utils.BoxCoder(weights).decode_single(deltas.float(), references)
    torch.testing.assert_close(boxes, expected.view(40, 2, 4))


@pytest.mark.parametrize("device, dtype", DEVICES)
def test_paste_masks_under_autocast_matches_float32(device, dtype):
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(6, 1, 28, 28, generator=g).to(device)
    xy = torch.rand(6, 2, generator=g) * 150
    boxes = torch.cat([xy, xy + 20 + torch.rand(6, 2, generator=g) * 100], dim=1).to(device)
    expected = paste_masks(masks, boxes, (200, 260))
    with torch.autocast(device, dtype=dtype):
        pasted = paste_masks(masks, boxes, (200, 260))
    assert pasted.dtype == torch.float32
    torch.testing.assert_close(pasted, expected, rtol=0, atol=1e-6)


def _model():
    torch.manual_seed(0)
    return detector.fpn_rcnn(4, depth=18, backbone_width=16, norm="bn", trainable_stages=5,
                             fpn_channels=32, representation_size=64, mask_channels=32,
                             anchor_sizes=[16, 32, 64, 128, 256],
                             transform=ImageTransform(min_size=None))


def _wide_sample(device):
    """A 128 x 640 image: coordinates up to 640 px, spaced 4 px apart in bfloat16."""
    image = torch.rand(3, 128, 640, generator=torch.Generator().manual_seed(2))
    boxes = torch.tensor([[330.5, 20.25, 610.75, 110.5], [40.0, 10.0, 300.0, 120.0],
                          [501.25, 61.5, 541.0, 99.75]])
    masks = torch.zeros(3, 128, 640, dtype=torch.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        mask[y1:y2, x1:x2] = 1
    target = {"boxes": boxes, "labels": torch.tensor([1, 2, 3]), "masks": masks}
    return image.to(device), {k: v.to(device) for k, v in target.items()}


def _proposals(target):
    """Fixed proposals at fractional coordinates: jittered ground truth, random
    boxes, and two whose area exceeds float16's range (FPN level 4, not 5)."""
    g = torch.Generator().manual_seed(3)
    gt = target["boxes"].cpu()
    jittered = gt.repeat(20, 1) + torch.randn(60, 4, generator=g) * 12
    xy = torch.rand(100, 2, generator=g) * torch.tensor([600.0, 100.0])
    random = torch.cat([xy, xy + 8 + torch.rand(100, 2, generator=g) * 150], dim=1)
    large = torch.tensor([[10.5, 4.25, 620.5, 125.0], [2.0, 1.5, 637.5, 127.0]])
    boxes = torch.cat([jittered, random, large])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, 640)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, 128)
    return boxes.to(target["boxes"].device)


def _recorded_training_pass(model, image, target, fixed, dtype, monkeypatch):
    """One training forward, under autocast to ``dtype`` (None: float32), with
    the ROI heads given ``fixed`` proposals in the dtype the RPN produced; returns
    what the RPN and ROI heads sampled, the FPN levels and the losses."""
    seen = {"rpn_labels": [], "rpn_targets": [], "levels": [], "op_rois": [], "proposals": [],
            "sampled": []}

    def record(key, fn):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            seen[key].append(out)
            return out
        return wrapped

    rpn_sampler = model.rpn.sampler
    monkeypatch.setattr(model.rpn, "sampler",
                        lambda labels: (seen["rpn_labels"].extend(labels), rpn_sampler(labels))[1])
    monkeypatch.setattr(model.rpn.box_coder, "encode",
                        record("rpn_targets", model.rpn.box_coder.encode))
    monkeypatch.setattr(detector.modeling.poolers, "pyramid_levels",
                        record("levels", detector.modeling.poolers.pyramid_levels))
    for pooler in (model.roi_heads.box_pooler, model.roi_heads.mask_pooler):
        op = pooler.op
        monkeypatch.setattr(pooler, "op", lambda x, rois, op=op, **kw: (
            seen["op_rois"].append(rois), op(x, rois, **kw))[1])
    monkeypatch.setattr(model.roi_heads, "_sample", record("sampled", model.roi_heads._sample))
    heads_forward = model.roi_heads.forward

    def heads(features, proposals, sizes, targets=None):
        seen["proposals"].extend(proposals)
        return heads_forward(features, [fixed.to(p.dtype) for p in proposals], sizes, targets)

    monkeypatch.setattr(model.roi_heads, "forward", heads)
    torch.manual_seed(4)
    device = image.device.type
    with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
        losses = model([image], [target])
    monkeypatch.undo()
    return seen, losses


@pytest.mark.parametrize("device, dtype", DEVICES)
def test_training_under_autocast_samples_the_float32_targets(device, dtype, monkeypatch):
    model = _model().to(device).train()
    image, target = _wide_sample(device)
    fixed = _proposals(target)
    ref, _ = _recorded_training_pass(model, image, target, fixed, None, monkeypatch)
    amp, losses = _recorded_training_pass(model, image, target, fixed, dtype, monkeypatch)

    # values first (dtypes below): the same computation, so equal to rounding
    same = functools.partial(torch.testing.assert_close, rtol=1e-6, atol=1e-6,
                             check_dtype=False)
    # the RPN: anchor labels and regression targets
    assert len(amp["rpn_labels"]) == len(ref["rpn_labels"]) == 1
    same(amp["rpn_labels"], ref["rpn_labels"], rtol=0, atol=0)
    assert (ref["rpn_labels"][0] == 1).any()
    same(amp["rpn_targets"], ref["rpn_targets"])
    # the ROI heads: sampled proposals, labels, matches, regression targets
    for got, want in zip(amp["sampled"][0], ref["sampled"][0]):
        same(got, want)
        assert [t.dtype for t in got] == [t.dtype for t in want]
    assert (torch.cat(ref["sampled"][0][1]) > 0).any()
    # FPN levels of the box and mask poolers, and what the ROI operators receive
    assert len(amp["levels"]) == len(ref["levels"]) == 2
    for got, want in zip(amp["levels"], ref["levels"]):
        assert torch.equal(got, want)
    assert len(set(torch.cat(ref["levels"]).tolist())) > 1  # more than one level used
    assert [p.dtype for p in amp["proposals"]] == [torch.float32]
    assert {t.dtype for t in amp["rpn_targets"]} == {torch.float32}
    assert {r.dtype for r in amp["op_rois"]} == {torch.float32}
    assert losses.keys() == {"loss_rpn_objectness", "loss_rpn_box", "loss_classifier",
                             "loss_box_reg", "loss_mask"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()


@pytest.mark.parametrize("device, dtype", DEVICES)
def test_detections_under_autocast_are_float32(device, dtype):
    model = _model().to(device).eval()
    model.configure_inference(score_thresh=0.0)
    image, _ = _wide_sample(device)
    with torch.no_grad(), torch.autocast(device, dtype=dtype):
        (result,) = model([image])
    assert result["boxes"].shape[0] > 0
    assert {k: v.dtype for k, v in result.items()} == {
        "boxes": torch.float32, "scores": torch.float32, "labels": torch.int64,
        "masks": torch.float32}


def test_bf16_mixed_training_through_lightning(tmp_path, monkeypatch):
    """trainer.precision=bf16-mixed on a CPU, the Trainer built from the
    composed config: finite losses, float32 boxes in what the poolers receive
    while the features are bfloat16."""
    seen = []
    forward = Pooler.forward

    def spy(self, features, boxes):
        seen.append((features[0].dtype, {b.dtype for b in boxes}))
        return forward(self, features, boxes)

    monkeypatch.setattr(Pooler, "forward", spy)
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=["trainer.precision=bf16-mixed",
                                          f"trainer.default_root_dir={tmp_path}"])
    assert cfg.trainer.accelerator == "cpu"
    trainer = hydra.utils.instantiate(
        cfg.trainer, max_steps=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=1)
    data = SyntheticDataModule(str(tmp_path / "data"), num_train=4, num_val=2, num_test=0,
                               image_size=(96, 128), batch_size=2)
    trainer.fit(DetectionModule(SPEC, optimizer="adamw", lr=1e-3, warmup_steps=1), data)
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert seen and all(features == torch.bfloat16 for features, _ in seen)
    assert {dtype for _, boxes in seen for dtype in boxes} == {torch.float32}
