"""detector.export: a small Mask R-CNN that has learned the synthetic shapes,
exported as a torch.export program (.pt2) and as ONNX run by onnxruntime,
gives the eager model's detections on images of other sizes and shapes
(landscape, larger than the training size; portrait, smaller), with each ROI
operator; the .pt2 reloads in a process that imports only ``ops``; the
commands export and predict with it; and unsupported settings are refused by
name.

Parity, as the README states it: every confident detection (score >= 0.3) of
either side is matched by label and box overlap on the other side, with boxes
within 0.5 px, scores within 1e-3 and masks (at the mask threshold) of IoU >= 0.99.
"""

import functools
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import LEARNED_IMAGE_SIZE
from detections import match

import detector
import ops
from detector.export import ExportedDetector, export
from detector.training import SyntheticDataModule
from detector.modeling.transform import ImageTransform

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

CONFIDENT = 0.3


@pytest.fixture(scope="module")
def learned_small(learned):
    """The session's learned Mask R-CNN (slow: conftest.learned) and two test
    images of other sizes than its 128x160 training images."""
    data = SyntheticDataModule(str(learned.parent / "data"), num_train=200, num_val=4,
                               num_test=0, image_size=LEARNED_IMAGE_SIZE, object_size="medium",
                               batch_size=4)
    data.setup("validate")
    first, second = (data.val_dataloader().dataset[i][0] for i in range(2))
    images = [F.interpolate(first[None], size=(200, 250), mode="bilinear")[0],  # 1.56x
              F.interpolate(second.transpose(1, 2)[None], size=(120, 96), mode="bilinear")[0]]
    return learned, images


def assert_same_detections(eager: dict, exported: dict, mask_threshold: float) -> int:
    """The parity above; returns how many confident detections were compared."""
    confident = {k: v[eager["scores"] >= CONFIDENT] for k, v in eager.items()}
    pairs = match(exported, confident, min_iou=0.99)
    assert len(pairs) == len(confident["scores"]), (
        f"{len(confident['scores']) - len(pairs)} of {len(confident['scores'])} confident "
        "detections not found")
    # and nothing confident on the other side that the eager model does not have
    extra = exported["scores"] >= CONFIDENT + 1e-3
    assert int(extra.sum()) <= len(pairs)
    for o, e in pairs:
        assert int(exported["labels"][o]) == int(confident["labels"][e])
        assert (exported["boxes"][o] - confident["boxes"][e]).abs().max() <= 0.5
        assert abs(float(exported["scores"][o] - confident["scores"][e])) <= 1e-3
        if "masks" in confident:
            a = exported["masks"][o] >= mask_threshold
            b = confident["masks"][e] >= mask_threshold
            union = int((a | b).sum())
            assert union == 0 or int((a & b).sum()) / union >= 0.99
    return len(pairs)


def _with_op(model, box_op=None, mask_op=None):
    if box_op is not None:
        model.roi_heads.box_pooler.op = box_op
    if mask_op is not None:
        model.roi_heads.mask_pooler.op = mask_op
    return model


def _eager(ckpt, **ops_):
    return _with_op(detector.load(ckpt).eval(), **ops_)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_exported_model_gives_the_eager_detections(learned_small, tmp_path, fmt):
    ckpt, images = learned_small
    model = _eager(ckpt)
    path = export(model, tmp_path / f"model.{fmt}")
    exported = ExportedDetector(path)
    assert exported.class_names == model.class_names
    compared = 0
    for image, eager, theirs in zip(images, _one_by_one(model, images), exported.predict(images)):
        assert theirs["masks"].shape[-2:] == image.shape[-2:]
        compared += assert_same_detections(eager, theirs, model.mask_threshold)
    assert compared >= 2  # not vacuous


def keep_everything(model):
    """Inference that keeps every anchor's proposal and every (proposal, class)
    pair: no top-n cut, NMS at IoU 1 (nothing suppressed), no score threshold.
    What comes out is then a set fixed by the anchors alone, whatever the
    rounding, so an untrained model's near-equal scores cannot change which
    detections are compared; every value still goes through every stage."""
    model.rpn.nms_thresh = 1.0
    return model.configure_inference(score_thresh=0.0, nms_thresh=1.0,
                                     detections_per_image=100_000,
                                     rpn_pre_nms_top_n=100_000, rpn_post_nms_top_n=100_000)


def assert_all_close(eager: dict, exported: dict, mask_threshold: float) -> None:
    """keep_everything's detections: all of them, in any order, within the
    parity's tolerances."""
    assert len(exported["scores"]) == len(eager["scores"]) > 0
    pairs = match(exported, eager, min_iou=0.99)
    assert len(pairs) >= 0.99 * len(eager["scores"])  # coincident boxes may pair crosswise
    o, e = (torch.tensor(i) for i in zip(*pairs))
    assert (exported["boxes"][o] - eager["boxes"][e]).abs().max() <= 0.5
    assert (exported["scores"].sort().values - eager["scores"].sort().values).abs().max() <= 1e-3
    if "masks" in eager:
        a, b = exported["masks"][o] >= mask_threshold, eager["masks"][e] >= mask_threshold
        assert (a & b).sum() >= 0.99 * (a | b).sum()


def _one_by_one(model, images):
    """Eager detections of each image alone, as the exported graph takes them (in
    a batch, the padding to the largest image adds anchors)."""
    return [model.predict([image])[0] for image in images]


def _tiny(build=detector.fpn_rcnn, **kwargs):
    torch.manual_seed(0)
    if build is detector.fpn_rcnn or getattr(build, "func", None) is detector.fpn_rcnn:
        kwargs = dict(fpn_channels=32, representation_size=64, mask_channels=32, **kwargs)
    model = build(4, depth=18, backbone_width=8, transform=ImageTransform(64, 96), **kwargs)
    return keep_everything(model.eval())


def _images():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 72, 100, generator=g),   # landscape, resized by 0.89
            torch.rand(3, 50, 40, generator=g)]    # portrait, resized by 1.6


# box_op / mask_op of each exported model: every operator and mode once
OPERATORS = {
    "align_avg+warp_max": dict(
        box_op=functools.partial(ops.roi_align, output_size=7, sampling_ratio=2, aligned=True),
        mask_op=functools.partial(ops.roi_warp, output_size=14, sampling_ratio=2, mode="max")),
    "pool+align_max_adaptive": dict(
        box_op=functools.partial(ops.roi_pool, output_size=7),
        mask_op=functools.partial(ops.roi_align, output_size=14, mode="max")),
    "warp_avg+align_legacy": dict(
        box_op=functools.partial(ops.roi_warp, output_size=7, sampling_ratio=2, mode="avg"),
        mask_op=functools.partial(ops.roi_align, output_size=14, sampling_ratio=2)),
}


@pytest.fixture(scope="module")
def tiny_program(tmp_path_factory):
    """The tiny model with align_avg+warp_max, its .pt2 and the .pt2 loaded,
    made once for the tests that need a program (here an export takes about
    30 s, and loading it about 40 s: torch parses its symbolic shapes)."""
    model = _with_op(_tiny(), **OPERATORS["align_avg+warp_max"])
    path = export(model, tmp_path_factory.mktemp("tiny") / "model.pt2")
    return model, path, ExportedDetector(path)


@pytest.mark.parametrize("fmt, operators", [("pt2", "align_avg+warp_max"),
                                            # every stage in onnxruntime: slow (pytest -m slow)
                                            pytest.param("onnx", "align_avg+warp_max",
                                                         marks=pytest.mark.slow),
                                            # the other operators' translations are
                                            # tested alone in test_ops_onnx.py (not slow)
                                            pytest.param("onnx", "pool+align_max_adaptive",
                                                         marks=pytest.mark.slow),
                                            pytest.param("onnx", "warp_avg+align_legacy",
                                                         marks=pytest.mark.slow)])
def test_every_stage_and_operator_exported(tmp_path, request, fmt, operators):
    if fmt == "pt2":  # the fixture's operators; exported only when a test needs it
        model, _, exported = request.getfixturevalue("tiny_program")
    else:
        model = _with_op(_tiny(), **OPERATORS[operators])
        exported = ExportedDetector(export(model, tmp_path / f"model.{fmt}"))
    images = _images()
    for image, eager, theirs in zip(images, _one_by_one(model, images), exported.predict(images)):
        assert theirs["masks"].shape == (len(eager["scores"]), 1, *image.shape[-2:])
        assert_all_close(eager, theirs, model.mask_threshold)


@pytest.mark.parametrize("build", [
    functools.partial(detector.c4_rcnn, masks=False),
    functools.partial(detector.c5_rcnn, masks=True),
    pytest.param(functools.partial(detector.fpn_rcnn, masks=False), marks=pytest.mark.slow),
], ids=["faster_c4", "mask_c5", "faster_fpn"])
def test_program_of_other_architectures(tmp_path, build):
    model = _tiny(build)
    exported = ExportedDetector(export(model, tmp_path / "model.pt2"))
    images = _images()
    for eager, theirs in zip(_one_by_one(model, images), exported.predict(images)):
        assert_all_close(eager, theirs, model.mask_threshold)


FRESH = """
import json, sys, torch
import ops
ops.load()
program = torch.export.load(sys.argv[1])
image = torch.load(sys.argv[2], weights_only=True)
out = program.module()(image)
assert not any(m == "detector" or m.startswith("detector.") for m in sys.modules)
torch.save(out, sys.argv[3])
"""


@pytest.mark.slow
def test_program_reloads_in_a_process_with_only_ops(learned_small, tmp_path):
    ckpt, images = learned_small
    model = _eager(ckpt)
    path = export(model, tmp_path / "model.pt2")
    torch.save(images[0], tmp_path / "image.pt")
    subprocess.run([sys.executable, "-c", FRESH, str(path), str(tmp_path / "image.pt"),
                    str(tmp_path / "out.pt")], check=True)
    boxes, scores, labels, masks = torch.load(tmp_path / "out.pt", weights_only=True)
    theirs = {"boxes": boxes, "scores": scores, "labels": labels, "masks": masks}
    assert assert_same_detections(model.predict(images[:1])[0], theirs,
                                  model.mask_threshold) >= 1


def _run(module, *args, cwd):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True)


@pytest.mark.slow
def test_commands_export_and_predict_alike(learned_small, tmp_path):
    """rcnn-export (fused, channels-last by default) then rcnn-predict exported=FILE
    writes the predictions.json of rcnn-predict ckpt_path=..."""
    ckpt, images = learned_small
    photos = tmp_path / "photos"
    photos.mkdir()
    from torchvision.io import write_png
    for i, image in enumerate(images):
        write_png((image * 255).round().byte(), str(photos / f"{i}.png"))
    done = _run("detector.cli.export", f"ckpt_path={ckpt}", "output=model.pt2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    results = {}
    for name, source in (("eager", f"ckpt_path={ckpt}"), ("exported", "exported=model.pt2")):
        done = _run("detector.cli.predict", source, f"input={photos}", f"output={name}",
                    "batch_size=1", cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        results[name] = json.loads((tmp_path / name / "predictions.json").read_text())
        assert (tmp_path / name / "0.png").is_file()
    confident = [[r for r in results[name] if r["score"] >= CONFIDENT + 1e-3]
                 for name in ("eager", "exported")]
    assert len(confident[0]) == len(confident[1]) >= 1
    key = lambda r: (r["file_name"], r["category_id"], [round(v) for v in r["bbox"]])  # noqa: E731
    for a, b in zip(sorted(confident[0], key=key), sorted(confident[1], key=key)):
        assert a["category_name"] == b["category_name"] and a["file_name"] == b["file_name"]
        assert max(abs(x - y) for x, y in zip(a["bbox"], b["bbox"])) <= 0.5


def test_unsupported_settings_are_named(tmp_path, tiny_program):
    model, path, exported = tiny_program
    with pytest.raises(ValueError, match="format must be one of pt2, onnx"):
        export(model, tmp_path / "model.tflite")
    with pytest.raises(ValueError, match=r"should end in \.onnx for format=onnx"):
        export(model, tmp_path / "model.pt2", format="onnx")
    with pytest.raises(ValueError, match="must be in eval mode"):
        export(model.train(), tmp_path / "model.pt2")
    model.eval()
    with pytest.raises(ValueError, match=r"resized to 4x96.*at least 33"):
        exported.predict([torch.rand(3, 20, 400)])
    with pytest.raises(ValueError, match="outside the exported sizes"):
        exported.predict([torch.rand(3, 8, 100)])
    with pytest.raises(ValueError, match="run on the CPU"):
        exported.to("cuda")
    done = _run("detector.cli.predict", f"exported={path}", "min_size=200", "input=.",
                "inference.score_thresh=0.2", cwd=tmp_path)
    assert done.returncode != 0
    assert "drop min_size, inference.score_thresh" in done.stderr
