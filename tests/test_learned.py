"""What the small model trained here once does (the ``learned`` fixture, about 4
minutes on 2 cores; slow). One file, so that ``pytest -n N --dist loadfile``
(CI) trains it on one worker only.

**It finds held-out shapes.** ``rcnn-predict`` on held-out synthetic images
(drawn with another seed), and the recall of its predictions.json against the
held-out annotations. Recall here: the fraction of held-out objects that one of
their image's 10 highest-scoring detections covers at IoU 0.5, ignoring the
class (located) and with the class right (classified). Measured on the 2-core
CPU, 37 objects in 12 images: after 600 steps 0.81 located / 0.43 classified,
and 0.84 / 0.35 in a second run (training is not bit-reproducible across thread
counts); the same model untrained (one step at lr 1e-12) 0.00 / 0.00. The
bounds (0.6 / 0.2) sit between with a margin for other machines.

**On images of other sizes than it was trained at, and on real photos.**

- Evaluated through CocoDataModule (the path data=coco takes) with the model
  resizing to its training size and to 1.5x it, the APs are of the same order
  (before the model owned its geometry, any resize other than 1 scored 0).
- The same image at twice its size gives the same detections, boxes x2.
- ``rcnn-predict`` on scikit-image's real photos (RGB, grayscale,
  RGBA, JPEG; portrait and landscape, larger than the training size) writes
  pictures and predictions in each photo's own pixel frame."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import box_iou

import detector
from detector.data.builders.synthetic import make_synthetic_coco
from detector.training import CocoDataModule, DetectionModule

from conftest import LEARNED_IMAGE_SIZE, LEARNED_STEPS
from detections import match

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
LOCATED_BOUND, CLASSIFIED_BOUND = 0.6, 0.2  # measured: see the module docstring


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """12 images the model never saw (another seed), as a COCO-format split."""
    root = tmp_path_factory.mktemp("held_out")
    images, annotations = make_synthetic_coco(root, "val", 12, LEARNED_IMAGE_SIZE, "medium",
                                              seed=123)
    return {"images": str(images), "annotations": str(annotations)}


def _evaluate(ckpt, split, min_size, tmp_path, backend="faster_coco_eval"):
    model = detector.load(ckpt, transform={"min_size": min_size, "max_size": 10_000})
    module = DetectionModule(model, val_loss=False, eval_backend=backend)
    data = CocoDataModule(split, split, batch_size=4)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.validate(module, data, verbose=False)
    return module.metrics["val"]


def test_evaluation_at_two_resize_settings_is_of_the_same_order(learned, held_out, tmp_path):
    at_training_size = _evaluate(learned, held_out, LEARNED_IMAGE_SIZE[0], tmp_path)
    larger = _evaluate(learned, held_out, LEARNED_IMAGE_SIZE[0] * 3 // 2, tmp_path)
    print(f"box / mask AP at x1: {at_training_size['bbox']['AP']:.3f} / "
          f"{at_training_size['segm']['AP']:.3f}; at x1.5: {larger['bbox']['AP']:.3f} / "
          f"{larger['segm']['AP']:.3f}")
    for iou_type in ("bbox", "segm"):
        base, other = at_training_size[iou_type]["AP"], larger[iou_type]["AP"]
        # measured on 2 cores: box / mask AP 0.111 / 0.109 at x1, 0.059 / 0.063 at x1.5 (an
        # untrained model scores 0); before the model owned its geometry, x1.5 scored 0
        assert base > 0.05, (iou_type, at_training_size)
        assert other > 0.3 * base, (iou_type, base, other)  # same order, not 0


def test_evaluation_backends_agree_on_a_real_validation_pass(learned, held_out, tmp_path):
    """A trained model's validation through DetectionModule: faster-coco-eval's
    metrics are pycocotools' to 1e-4."""
    ours = _evaluate(learned, held_out, LEARNED_IMAGE_SIZE[0], tmp_path)
    reference = _evaluate(learned, held_out, LEARNED_IMAGE_SIZE[0], tmp_path, "pycocotools")
    assert reference["bbox"]["AP"] > 0.05  # a model that finds things
    for iou_type in ("bbox", "segm"):
        for metric, value in reference[iou_type].items():
            assert ours[iou_type][metric] == pytest.approx(value, abs=1e-4), (iou_type, metric)


def test_an_image_twice_as_large_gives_the_same_detections(learned, held_out):
    model = detector.load(learned)
    images = sorted(Path(held_out["images"]).glob("*.png"))
    matched = total = 0
    for path in images:
        image = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        image = image.float() / 255
        double = F.interpolate(image[None], scale_factor=2, mode="bilinear",
                               align_corners=False)[0]
        small, large = model.predict([image, double])
        assert large["masks"].shape[-2:] == (2 * image.shape[1], 2 * image.shape[2])
        keep = small["scores"] > 0.3
        confident = {k: v[keep] for k, v in small.items()}
        halved = {**large, "boxes": large["boxes"] / 2}
        total += int(keep.sum())
        matched += len(match(halved, confident, min_iou=0.7))
    # measured on 2 cores: 29 of 32 detections scoring above 0.3 found again (same label,
    # box IoU >= 0.7 after halving); bilinear resampling twice is not the identity
    assert total >= 10  # detections to compare
    assert matched >= 0.75 * total, (matched, total)


def _photos(folder: Path) -> dict[str, tuple[int, int]]:
    """Real photos in the forms users have them; returns file name -> (h, w)."""
    from skimage import data

    folder.mkdir()
    astronaut, coffee, camera, coins = data.astronaut(), data.coffee(), data.camera(), data.coins()
    Image.fromarray(astronaut).save(folder / "astronaut.jpg", quality=90)  # 512x512 RGB JPEG
    Image.fromarray(coffee).save(folder / "coffee.png")  # 400x600 landscape
    Image.fromarray(coffee[:, 150:450].transpose(1, 0, 2)).save(folder / "portrait.png")
    Image.fromarray(camera).save(folder / "camera.png")  # grayscale
    rgba = np.dstack([data.chelsea(), np.full(data.chelsea().shape[:2], 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "chelsea_rgba.png")
    Image.fromarray(coins[:100, :90]).save(folder / "small_gray.jpg")  # smaller than training
    return {p.name: Image.open(p).size[::-1] for p in folder.iterdir()}


def test_predict_on_real_photos_in_their_own_frame(learned, tmp_path):
    pytest.importorskip("skimage")
    sizes = _photos(tmp_path / "photos")
    out = tmp_path / "out"
    predictions = run_predict(learned, tmp_path / "photos", out, "score_threshold=0.0")
    for name, (height, width) in sizes.items():
        picture = Image.open(out / f"{Path(name).stem}.png")
        assert picture.size == (width, height) and picture.mode == "RGB", name
        mine = [p for p in predictions if p["file_name"] == name]
        assert mine, f"no detections on {name} at score 0"
        for p in mine:
            x, y, w, h = p["bbox"]
            assert -1e-3 <= x and -1e-3 <= y and x + w <= width + 1e-3 and y + h <= height + 1e-3
            assert tuple(p["segmentation"]["size"]) == (height, width)
            assert mask_utils.decode(p["segmentation"]).shape == (height, width)


def recall(predictions: list[dict], annotations: dict, same_class: bool, top: int = 10
           ) -> float:
    """Fraction of ground-truth objects that one of their image's ``top``
    highest-scoring predictions (of the same class name if ``same_class``)
    covers at box IoU >= 0.5."""
    names = {c["id"]: c["name"] for c in annotations["categories"]}
    files = {i["id"]: i["file_name"] for i in annotations["images"]}
    best = {}
    for p in sorted(predictions, key=lambda p: -p["score"]):
        best.setdefault(p["file_name"], [])
        if len(best[p["file_name"]]) < top:
            best[p["file_name"]].append(p)
    found = total = 0
    for ann in annotations["annotations"]:
        total += 1
        mine = [p for p in best.get(files[ann["image_id"]], [])
                if not same_class or p["category_name"] == names[ann["category_id"]]]
        if not mine:
            continue
        xyxy = lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]  # noqa: E731
        ious = box_iou(torch.tensor([xyxy(ann["bbox"])]),
                       torch.tensor([xyxy(p["bbox"]) for p in mine]))
        found += int(ious.max() >= 0.5)
    return found / total


def run_predict(ckpt: Path, images: Path, out: Path, *overrides: str) -> list[dict]:
    """``rcnn-predict`` as a user types it, on the CPU; its predictions.json."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "rcnn-predict"), f"ckpt_path={ckpt}", f"input={images}",
         f"output={out}", "device=cpu", *overrides, f"hydra.run.dir={out / 'hydra'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "predictions.json").read_text())


def test_predict_finds_held_out_shapes(learned, held_out, tmp_path):
    annotations = json.loads(Path(held_out["annotations"]).read_text())
    predictions = run_predict(learned, Path(held_out["images"]), tmp_path / "out",
                              "batch_size=4")
    located, classified = (recall(predictions, annotations, same_class=c) for c in (False, True))
    print(f"recall at IoU 0.5 after {LEARNED_STEPS} steps: {located:.3f} ({classified:.3f} "
          "with the class right)")
    assert located >= LOCATED_BOUND and classified >= CLASSIFIED_BOUND
