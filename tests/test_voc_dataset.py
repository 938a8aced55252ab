"""Pascal VOC folders: 1-based boxes, instance masks from palette pngs,
difficult objects, boxes-only mode, errors that name the file; and the VOC07
11-point AP50, by hand and against COCOeval."""

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from torchvision.transforms import v2

from detector.data.voc import VOC_CLASSES, VocInstances
from detector.evaluation import evaluate
from detector.evaluation.voc import voc07_ap50, voc07_ap50_per_class

PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [64] * (3 * 251) + [224, 224, 192]

# id: (width, height, grayscale, [(name, (xmin, ymin, xmax, ymax) 1-based, difficult)])
IMAGES = {
    "000001": (60, 40, False, [("dog", (11, 6, 30, 25), 0), ("person", (41, 11, 55, 35), 1),
                               ("cat", (6, 29, 20, 38), 0)]),
    "000002": (50, 30, True, [("car", (1, 1, 50, 30), 0)]),
    # the bird lies right of the 60-pixel-wide image: degenerate once clipped
    "000003": (60, 40, False, [("bird", (61, 5, 66, 10), 0), ("bottle", (2, 3, 12, 20), 0)]),
}


def _instances(name: str) -> np.ndarray:
    """The SegmentationObject indices: each object fills (an L inside) its box."""
    width, height = IMAGES[name][:2]
    indices = np.zeros((height, width), dtype=np.uint8)
    if name == "000001":
        indices[5:25, 10:30] = 1
        indices[25, 10:30] = 255  # the void boundary below the dog
        indices[10:35, 40:55] = 2
        indices[10:20, 48:55] = 0  # the person is an L: 25 * 15 - 10 * 7 = 305 pixels
        indices[28:38, 5:20] = 3
    else:
        indices[2:28, 3:47] = 1
        indices[0:2, :] = 255
    return indices


def _png(path, indices):
    image = Image.frombytes("P", indices.shape[::-1], indices.tobytes())
    image.putpalette(PALETTE)
    image.save(path)


def _xml(width, height, objects, name="x"):
    parts = [f"<annotation><filename>{name}.jpg</filename><size><width>{width}</width>"
             f"<height>{height}</height><depth>3</depth></size>"]
    for cls, (xmin, ymin, xmax, ymax), difficult in objects:
        parts.append(f"<object><name>{cls}</name><truncated>0</truncated>"
                     f"<difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin>"
                     f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>"
                     "</object>")
    return "\n".join(parts) + "</annotation>\n"


def _make_voc(root):
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main", "ImageSets/Segmentation",
                   "SegmentationObject", "SegmentationClass"):
        (root / folder).mkdir(parents=True)
    for name, (width, height, gray, objects) in IMAGES.items():
        pixels = np.full((height, width, 3), (200, 120, 40), dtype=np.uint8)
        image = Image.fromarray(pixels[..., 0] if gray else pixels)
        image.save(root / "JPEGImages" / f"{name}.jpg", quality=95)
        (root / "Annotations" / f"{name}.xml").write_text(_xml(width, height, objects, name))
        if name != "000003":
            indices = _instances(name)
            _png(root / "SegmentationObject" / f"{name}.png", indices)
            classes = np.zeros_like(indices)
            for k, (cls, _, _) in enumerate(objects, start=1):
                classes[indices == k] = VOC_CLASSES.index(cls) + 1
            classes[indices == 255] = 255
            _png(root / "SegmentationClass" / f"{name}.png", classes)
    (root / "ImageSets/Main/trainval.txt").write_text("000001\n000002\n000003\n")
    (root / "ImageSets/Segmentation/trainval.txt").write_text("000001\n000002\n")
    return root


# The fixture's Segmentation list holds 2 of its Main list's 3 images: reading masks says so.
SEGMENTATION_SHORTER = "instance masks exist for the Segmentation list"


def _read(voc, **kwargs) -> VocInstances:
    """VocInstances on the fixture, reading masks (the Segmentation list), with its warning."""
    with pytest.warns(UserWarning, match=SEGMENTATION_SHORTER):
        return VocInstances(voc, **kwargs)


@pytest.fixture
def voc(tmp_path):
    return _make_voc(tmp_path / "VOC2007")


def test_boxes_labels_and_masks(voc):
    dataset = _read(voc)
    assert dataset.has_masks and len(dataset) == 2
    assert dataset.image_ids == [0, 1] and dataset.file_names == ["000001", "000002"]
    assert dataset.class_names == ["__background__", *VOC_CLASSES]
    assert dataset.category_ids == list(range(1, 21))
    assert dataset.label_to_category == {i: i for i in range(1, 21)}
    assert dataset.category_to_label == dataset.label_to_category
    image, target = dataset[0]
    assert image.dtype == torch.float32 and image.shape == (3, 40, 60)
    assert target["image_id"] == 0
    # xmin, ymin - 1 and xmax, ymax kept; the difficult person is left out
    assert target["boxes"].tolist() == [[10, 5, 30, 25], [5, 28, 20, 38]]
    assert target["boxes"].dtype == torch.float32
    assert target["labels"].tolist() == [12, 8]  # dog, cat
    assert target["labels"].dtype == torch.int64
    indices = torch.from_numpy(_instances("000001"))
    assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (2, 40, 60)
    assert torch.equal(target["masks"][0], (indices == 1).to(torch.uint8))
    assert torch.equal(target["masks"][1], (indices == 3).to(torch.uint8))
    assert target["masks"][0].sum() == 400 and target["masks"][0, 25].sum() == 0  # void: out


def test_difficult_objects_are_crowd_in_the_ground_truth(voc):
    coco = _read(voc).coco
    info = coco.imgs[0]
    assert (info["file_name"], info["width"], info["height"]) == ("000001.jpg", 60, 40)
    anns = coco.imgToAnns[0]
    assert [a["iscrowd"] for a in anns] == [0, 1, 0]
    person = anns[1]
    assert person["category_id"] == 15 and person["bbox"] == [40, 10, 15, 25]
    assert person["area"] == 305  # the mask's area, not the box's
    assert coco.annToMask(person).sum() == 305
    assert anns[0]["bbox"] == [10, 5, 20, 20] and anns[0]["area"] == 400


def test_grayscale_image_has_three_channels(voc):
    image, target = _read(voc)[1]
    assert image.shape == (3, 30, 50)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    assert target["boxes"].tolist() == [[0, 0, 50, 30]]  # 1..50 inclusive: the whole width
    assert target["labels"].tolist() == [7]  # car
    # an RGBA png (under the .jpg name: decoders go by content) loses its alpha
    Image.new("RGBA", (50, 30), (10, 20, 30, 128)).save(voc / "JPEGImages/000002.jpg", "PNG")
    image, _ = _read(voc)[1]
    assert image.shape == (3, 30, 50) and image[:, 0, 0].mul(255).round().tolist() == [10, 20, 30]


def test_boxes_only(voc):
    with pytest.warns(UserWarning, match="dropped 1 degenerate boxes"):
        dataset = VocInstances(voc, masks=False)
    assert not dataset.has_masks and dataset.file_names == ["000001", "000002", "000003"]
    assert all("segmentation" not in a for a in dataset.coco.dataset["annotations"])
    _, target = dataset[0]
    assert target["masks"].shape == (2, 40, 60) and target["masks"].sum() == 0
    _, target = dataset[2]
    assert target["boxes"].tolist() == [[1, 2, 12, 20]] and target["labels"].tolist() == [5]
    # "auto" falls back to boxes from the Main list when a png is missing
    (voc / "SegmentationObject/000002.png").unlink()
    with pytest.warns(UserWarning, match="dropped 1 degenerate"):
        dataset = VocInstances(voc)
    assert not dataset.has_masks and len(dataset) == 3


def test_masks_from_a_shorter_segmentation_list_are_a_warning(voc):
    """The fixture's Segmentation list has 2 of the Main list's 3 images."""
    for masks in (True, "auto"):
        with pytest.warns(UserWarning, match=r"Segmentation/trainval.txt lists 2 images and "
                                             r".*Main/trainval.txt 3: .*masks=False reads "
                                             r"all 3"):
            assert len(VocInstances(voc, masks=masks)) == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        VocInstances(voc, masks=False)
    assert not [w for w in caught if "lists 2 images" in str(w.message)]


@pytest.mark.parametrize("model, images, masks", [
    ("model=faster_rcnn", 3, False), ("model.masks=false", 3, False),
    ("model=mask_rcnn", 2, True)])
def test_data_voc_reads_the_list_of_the_model(voc, tmp_path, model, images, masks):
    """``data=voc``: a box-only model reads every image of ImageSets/Main, not
    the shorter Segmentation list; a mask model reads the Segmentation list,
    with the warning that counts both."""
    import hydra
    from hydra import compose, initialize_config_dir

    configs = str(Path(__file__).resolve().parents[1] / "configs")
    with initialize_config_dir(config_dir=configs, version_base="1.3"):
        cfg = compose("train", overrides=["data=voc", f"data.root={voc}", model,
                                          f"paths.output_dir={tmp_path}"])
    data = hydra.utils.instantiate(cfg.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = data.dataset("train")
    assert len(dataset) == images and data.has_masks == masks
    assert dataset.split_file.parent.name == ("Segmentation" if masks else "Main")
    counted = [w for w in caught if "lists 2 images and" in str(w.message)]
    assert len(counted) == (1 if masks else 0)


def test_a_mask_model_on_a_folder_without_masks_is_told_the_fix(voc):
    from detector.training import VocDataModule

    for png in (voc / "SegmentationObject").glob("*.png"):
        png.unlink()
    data = VocDataModule(str(voc), {"split": "trainval"}, {"split": "trainval"}, masks=True)
    with pytest.raises(FileNotFoundError, match=r"instance mask .*000001.png is missing "
                                                r"\(2 of the 2 images .*model=faster_rcnn"):
        data.dataset("train")


def test_custom_class_names(voc):
    names = ["cat", "dog", "person", "car"]
    dataset = _read(voc, class_names=names)
    assert dataset.class_names == ["__background__", *names]
    assert dataset[0][1]["labels"].tolist() == [2, 1]


def test_seeded_transforms_move_boxes_and_masks_together(voc):
    dataset = _read(voc, transforms=v2.RandomHorizontalFlip(0.5))
    seen = set()
    for seed in range(6):
        _, target = dataset[0, seed]
        _, again = dataset[0, seed]
        assert torch.equal(target["boxes"], again["boxes"])
        x1 = target["boxes"][0, 0].item()
        seen.add(x1)
        cols = target["masks"][0].any(dim=0).nonzero()
        assert (cols.min().item(), cols.max().item() + 1) == (x1, target["boxes"][0, 2].item())
    assert seen == {10.0, 30.0}  # unflipped and flipped (60 - 30)


def _rewrite(voc, name, objects):
    width, height = IMAGES[name][:2]
    (voc / "Annotations" / f"{name}.xml").write_text(_xml(width, height, objects, name))


@pytest.mark.parametrize("change, error, message", [
    (lambda v: (v / "Annotations/000002.xml").write_text("<annotation><size>"),
     ValueError, r"Annotations/000002.xml is not valid XML"),
    (lambda v: _rewrite(v, "000001", [("zebra", (1, 1, 5, 5), 0)] * 3),
     ValueError, r"000001.xml: object 1 has unknown class 'zebra'; known classes: aeroplane, "
                 r"bicycle, .*tvmonitor"),
    (lambda v: _rewrite(v, "000002", [("car", (1, "abc", 5, 5), 0)]),
     ValueError, r"000002.xml: object 1 \(car\) <bndbox> has a non-numeric <ymin> 'abc'"),
    (lambda v: (v / "Annotations/000001.xml").write_text(
        (v / "Annotations/000001.xml").read_text().replace("<ymax>35</ymax>", "")),
     ValueError, r"000001.xml: object 2 \(person\) <bndbox> has no <ymax>"),
    (lambda v: _png(v / "SegmentationObject/000001.png", np.minimum(_instances("000001"), 2)),
     ValueError, r"SegmentationObject/000001.png has 2 instances \(values \[1, 2\]\) but "
                 r".*Annotations/000001.xml has 3 objects"),
    (lambda v: (v / "JPEGImages/000002.jpg").unlink(),
     FileNotFoundError, r"image not found: .*JPEGImages/000002.jpg \(listed in "
                        r".*ImageSets/Segmentation/trainval.txt\)"),
    (lambda v: (v / "Annotations/000002.xml").unlink(),
     FileNotFoundError, r"annotation file not found: .*Annotations/000002.xml"),
])
def test_bad_files_are_named(voc, change, error, message):
    change(voc)
    with pytest.raises(error, match=message):
        _read(voc)


def test_missing_lists_and_masks_are_named(voc):
    with pytest.raises(FileNotFoundError, match=r"neither .*Segmentation/test.txt nor "
                                                r".*Main/test.txt exists"):
        VocInstances(voc, split="test")
    (voc / "SegmentationObject/000002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"masks=True but instance mask "
                                                r".*SegmentationObject/000002.png is missing"):
        VocInstances(voc, masks=True)
    with pytest.raises(ValueError, match="masks must be 'auto', True or False"):
        VocInstances(voc, masks="yes")


def test_image_size_must_match_the_xml(voc):
    Image.new("RGB", (61, 40)).save(voc / "JPEGImages/000001.jpg")
    dataset = _read(voc)
    with pytest.raises(ValueError, match=r"000001.jpg is 40x61 \(h x w\) but "
                                         r".*Annotations/000001.xml says 40x60"):
        dataset[0]


def _perfect(coco, with_masks):
    """The non-difficult ground truth, as results."""
    results = []
    for ann in coco.dataset["annotations"]:
        if not ann["iscrowd"]:
            entry = {"image_id": ann["image_id"], "category_id": ann["category_id"],
                     "bbox": ann["bbox"], "score": 1.0}
            if with_masks:
                entry["segmentation"] = ann["segmentation"]
            results.append(entry)
    return results


def test_ground_truth_as_predictions_scores_one(voc):
    coco = _read(voc).coco
    metrics = evaluate(coco, _perfect(coco, True), ("bbox", "segm"))
    assert metrics["bbox"]["AP50"] == pytest.approx(1.0)
    assert metrics["segm"]["AP50"] == pytest.approx(1.0)
    assert voc07_ap50(coco, _perfect(coco, True)) == pytest.approx(1.0)
    with pytest.warns(UserWarning, match="degenerate"):
        coco = VocInstances(voc, masks=False).coco
    assert evaluate(coco, _perfect(coco, False), ("bbox",))["bbox"]["AP50"] == pytest.approx(1.0)
    assert voc07_ap50(coco, _perfect(coco, False)) == pytest.approx(1.0)


def _gt(anns, num_images=2, num_categories=2):
    """A COCO ground truth from (image id, category id, (x1, y1, x2, y2), difficult)."""
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"}
                   for i in range(num_images)],
        "categories": [{"id": c, "name": str(c)} for c in range(1, num_categories + 1)],
        "annotations": [{"id": k + 1, "image_id": i, "category_id": c,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                         "iscrowd": d} for k, (i, c, (x1, y1, x2, y2), d) in enumerate(anns)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _det(image_id, category_id, box, score):
    x1, y1, x2, y2 = box
    return {"image_id": image_id, "category_id": category_id, "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": score}


A, B, FAR = (0, 0, 10, 10), (50, 50, 70, 80), (80, 0, 95, 20)


def test_voc07_perfect_and_ordering():
    coco = _gt([(0, 1, A, 0), (1, 1, B, 0), (1, 2, A, 0)])
    perfect = [_det(0, 1, A, 0.9), _det(1, 1, B, 0.8), _det(1, 2, A, 0.7)]
    assert voc07_ap50(coco, perfect) == 1.0
    # two dogs, found: TP (0.9) then FP (0.8). Recall [0.5, 0.5], precision [1, 0.5]:
    # recall points 0, 0.1, ..., 0.5 reach precision 1, points 0.6 .. 1 nothing: 6 / 11
    one_class = _gt([(0, 1, A, 0), (1, 1, B, 0)], num_categories=1)
    assert voc07_ap50(one_class, [_det(0, 1, A, 0.9), _det(0, 1, FAR, 0.8)]) == 6 / 11
    # one dog, FP (0.9) before TP (0.8): recall [0, 1], precision [0, 0.5]: 0.5 at every point
    single = _gt([(0, 1, A, 0)], num_images=1, num_categories=1)
    assert voc07_ap50(single, [_det(0, 1, FAR, 0.9), _det(0, 1, A, 0.8)]) == pytest.approx(0.5)
    # equal scores keep the order of the results
    assert voc07_ap50(single, [_det(0, 1, FAR, 0.7), _det(0, 1, A, 0.7)]) == pytest.approx(0.5)
    assert voc07_ap50(single, [_det(0, 1, A, 0.7), _det(0, 1, FAR, 0.7)]) == 1.0


def test_voc07_duplicates_difficult_and_missing_classes():
    # a second detection of A is a FP: recall [0.5, 0.5, 1], precision [1, 0.5, 2/3]:
    # points 0 .. 0.5 reach 1, points 0.6 .. 1 reach 2/3: (6 + 5 * 2/3) / 11 = 28 / 33
    coco = _gt([(0, 1, A, 0), (1, 1, B, 0)], num_categories=1)
    duplicate = [_det(0, 1, A, 0.9), _det(0, 1, (0, 0, 10, 9), 0.8), _det(1, 1, B, 0.7)]
    assert voc07_ap50(coco, duplicate) == pytest.approx(28 / 33)
    # a detection on the difficult B is neither TP nor FP (as FP this would be 0.5)
    coco = _gt([(0, 1, A, 0), (1, 1, B, 1)], num_categories=1)
    assert voc07_ap50(coco, [_det(1, 1, B, 0.95), _det(0, 1, A, 0.9)]) == 1.0
    # category 2 has no detections: 0, and the mean over both is 0.5; category 3
    # has only difficult ground truth: NaN, left out of the mean
    coco = _gt([(0, 1, A, 0), (0, 2, B, 0), (1, 3, A, 1)], num_categories=3)
    scores = voc07_ap50_per_class(coco, [_det(0, 1, A, 0.9), _det(1, 3, A, 0.9)])
    assert scores["category_ids"] == [1, 2, 3]
    assert scores["per_class"][:2] == [1.0, 0.0] and np.isnan(scores["per_class"][2])
    assert scores["AP50_voc07"] == 0.5


def test_voc07_iou_threshold_and_image_ids():
    single = _gt([(0, 1, A, 0)], num_images=1, num_categories=1)
    # IoU exactly 0.5 (50 / 100, no +1) is not above the threshold; 0.6 is
    assert voc07_ap50(single, [_det(0, 1, (0, 0, 5, 10), 0.9)]) == 0.0
    assert voc07_ap50(single, [_det(0, 1, (0, 0, 6, 10), 0.9)]) == 1.0
    coco = _gt([(0, 1, A, 0), (1, 1, B, 0)], num_categories=1)
    found = [_det(0, 1, A, 0.9)]
    assert voc07_ap50(coco, found) == 6 / 11
    assert voc07_ap50(coco, found, image_ids=[0]) == 1.0
    with pytest.raises(ValueError, match="result 0 has category_id 7"):
        voc07_ap50(coco, [_det(0, 7, A, 0.9)])
    with pytest.raises(ValueError, match="result 0 has image_id 9"):
        voc07_ap50(coco, [_det(9, 1, A, 0.9)])


def test_train_py_runs_on_voc_folders(voc, tmp_path):
    """``data=voc``: train.py trains on the VOC folder (masks where the split
    has SegmentationObject pngs), evaluates with COCOeval plus VOC07's AP50,
    with the model resizing the 60x40 images (factor 1.6) itself."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from detector.training import train

    configs = str(Path(__file__).resolve().parents[1] / "configs")
    with initialize_config_dir(config_dir=configs, version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=voc", f"data.root={voc}", "data.val.split=trainval", "data.batch_size=2",
            "data.num_workers=0", "model.transform.min_size=64", "model.transform.max_size=128",
            f"paths.output_dir={tmp_path / 'run'}", f"paths.log_dir={tmp_path / 'logs'}",
            "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1", "~callbacks.progress",
            "module.warmup_steps=1"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    with pytest.warns(UserWarning, match=SEGMENTATION_SHORTER):
        metrics = train(cfg)
    assert set(metrics) == {"bbox", "segm"}
    assert 0.0 <= metrics["bbox"]["AP50_voc07"] <= 1.0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["split"] == "val"  # no test split given: said so


def test_a_mask_model_on_boxes_only_data_is_refused(voc, tmp_path):
    import pytorch_lightning as pl

    from detector.training import DetectionModule, VocDataModule
    from conftest import SPEC

    data = VocDataModule(str(voc), {"split": "trainval"}, {"split": "trainval"}, masks=False)
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         default_root_dir=tmp_path)
    with pytest.raises(ValueError, match=r"no instance masks .* \(model=faster_rcnn"), \
            pytest.warns(UserWarning, match="dropped 1 degenerate boxes"):  # Main list's 000002
        trainer.fit(DetectionModule(SPEC), data)


def test_a_box_only_model_reads_the_main_list_outside_hydra(voc):
    """A VocDataModule built in Python (or by rcnn-lightning) with masks="auto":
    a box-only model makes it read the Main list too (DetectionModule tells it)."""
    from detector.training import VocDataModule

    data = VocDataModule(str(voc), {"split": "trainval"}, {"split": "trainval"})
    with pytest.warns(UserWarning, match=SEGMENTATION_SHORTER):
        assert len(data.dataset("train")) == 2  # a mask model: the Segmentation list
    data.follow_model(masks=False)
    with pytest.warns(UserWarning, match="dropped 1 degenerate boxes"):
        assert len(data.dataset("train")) == 3 and not data.has_masks
