"""COCO-format datasets: polygons and RLE, crowd regions, category mapping,
degenerate boxes, transforms, and errors that name the file and the entry."""

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from torchvision.io import write_png

from detector.data.coco import CocoInstances, collate, detection_transforms
from detector.evaluation import evaluate


def _write(tmp_path, annotations=None, categories=None, extra_image=False):
    images_dir = tmp_path / "images"
    images_dir.mkdir(exist_ok=True)
    write_png(torch.full((3, 40, 60), 100, dtype=torch.uint8), str(images_dir / "a.png"))
    images = [{"id": 5, "file_name": "a.png", "height": 40, "width": 60}]
    if extra_image:
        (images_dir / "broken.png").write_bytes(b"not a png")
        images.append({"id": 6, "file_name": "broken.png", "height": 40, "width": 60})
    rle_mask = np.zeros((40, 60), dtype=np.uint8)
    rle_mask[20:30, 30:50] = 1
    rle = mask_utils.encode(np.asfortranarray(rle_mask))
    rle["counts"] = rle["counts"].decode("ascii")
    if annotations is None:
        annotations = [
            {"id": 1, "image_id": 5, "category_id": 9, "bbox": [10, 5, 10, 10], "iscrowd": 0,
             "area": 100, "segmentation": [[10, 5, 20, 5, 20, 15, 10, 15]]},
            {"id": 2, "image_id": 5, "category_id": 3, "bbox": [30, 20, 20, 10], "iscrowd": 0,
             "area": 200, "segmentation": rle},
            {"id": 3, "image_id": 5, "category_id": 3, "bbox": [0, 0, 60, 40], "iscrowd": 1,
             "area": 2400, "segmentation": rle},
            {"id": 4, "image_id": 5, "category_id": 3, "bbox": [59.5, 10, 5, 5], "iscrowd": 0,
             "area": 2, "segmentation": [[59.5, 10, 60, 10, 60, 15]]},
        ]
    data = {"images": images, "annotations": annotations,
            "categories": categories or [{"id": 3, "name": "cat"}, {"id": 9, "name": "dog"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return images_dir, path


def test_targets_from_polygons_and_rle(tmp_path):
    with pytest.warns(UserWarning, match="dropped 1 degenerate boxes"):
        dataset = CocoInstances(*_write(tmp_path))
    assert dataset.class_names == ["__background__", "cat", "dog"]
    assert dataset.label_to_category == {1: 3, 2: 9}
    image, target = dataset[0]
    assert image.dtype == torch.float32 and image.shape == (3, 40, 60)
    assert torch.allclose(image, torch.full_like(image, 100 / 255))
    assert target["labels"].tolist() == [2, 1]  # dog (id 9) → 2, cat (id 3) → 1; crowd left out
    assert target["boxes"].tolist() == [[10, 5, 20, 15], [30, 20, 50, 30]]
    assert target["masks"].shape == (2, 40, 60) and target["masks"].dtype == torch.uint8
    assert target["masks"][1].sum() == 200 and target["masks"][1, 20:30, 30:50].all()
    assert target["masks"][0, 6:14, 11:19].all() and target["masks"][0].sum() < 140
    assert target["image_id"] == 5


def test_flip_moves_boxes_and_masks_together(tmp_path):
    """The data pipeline only augments (the model resizes): a flip mirrors the
    boxes and masks with the image, and evaluation images are left as they are."""
    images_dir, path = _write(tmp_path)
    assert detection_transforms(False) is None
    with pytest.warns(UserWarning):
        plain = CocoInstances(images_dir, path)
        flipped = CocoInstances(images_dir, path, detection_transforms(True, flip_probability=1))
    (image, target), (mirror, mirrored) = plain[0], flipped[0]
    assert mirror.shape == image.shape == (3, 40, 60)
    assert torch.equal(mirror, image.flip(-1))
    assert mirrored["boxes"].tolist() == [[40, 5, 50, 15], [10, 20, 30, 30]]  # x -> 60 - x
    assert torch.equal(mirrored["masks"], target["masks"].flip(-1))
    images, targets = collate([plain[0], plain[0]])
    assert len(images) == 2 and targets[1]["labels"].tolist() == [2, 1]


def test_flip_probability_is_checked():
    with pytest.raises(ValueError, match="flip_probability must be in"):
        detection_transforms(True, flip_probability=1.5)


@pytest.mark.parametrize("change, message", [
    (lambda a: a[0].update(image_id=77), r"annotation id 1 refers to image_id 77"),
    (lambda a: a[0].update(category_id=4), r"annotation id 1 has category_id 4"),
    (lambda a: a[1].update(bbox=[1, 2, 3]), r"annotation id 2 has a malformed bbox \[1, 2, 3\]"),
    (lambda a: a[1].update(segmentation="x"), r"annotation id 2 has a malformed segmentation"),
])
def test_malformed_entries_are_named(tmp_path, change, message):
    images_dir, path = _write(tmp_path)
    data = json.loads(path.read_text())
    change(data["annotations"])
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"ann.json: {message}"):
        CocoInstances(images_dir, path)


def test_bad_files_are_named(tmp_path):
    images_dir, path = _write(tmp_path, extra_image=True)
    with pytest.raises(FileNotFoundError, match="annotation file not found: .*missing.json"):
        CocoInstances(images_dir, tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        CocoInstances(tmp_path / "nope", path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        CocoInstances(images_dir, bad)
    with pytest.warns(UserWarning):
        dataset = CocoInstances(images_dir, path)
    with pytest.raises(RuntimeError, match=r"cannot read image .*broken.png \(image id 6\)"):
        dataset[1]


def test_degenerate_polygons_are_dropped_and_counted(tmp_path):
    """A polygon of fewer than three points (COCO has a few) would fail inside
    pycocotools; it is dropped, and an annotation left with no polygon goes
    from the targets and the ground truth alike, with one counting warning."""
    images_dir, path = _write(tmp_path)
    data = json.loads(path.read_text())
    data["annotations"] = data["annotations"][:3]  # without the degenerate box
    data["annotations"][0]["segmentation"].append([12, 6, 14, 6])  # two points
    data["annotations"].append({"id": 5, "image_id": 5, "category_id": 9, "iscrowd": 0,
                                "bbox": [40, 2, 10, 10], "area": 100,
                                "segmentation": [[40, 2, 50, 2]]})  # its only polygon
    data["annotations"].append({"id": 6, "image_id": 5, "category_id": 9, "iscrowd": 0,
                                "bbox": [40, 25, 10, 10], "area": 100, "segmentation": []})
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="dropped 2 segmentation polygons .* and 2 annotations"):
        dataset = CocoInstances(images_dir, path)
    assert sorted(dataset.coco.anns) == [1, 2, 3]
    _, target = dataset[0]
    assert target["labels"].tolist() == [2, 1]
    assert target["masks"][0, 6:14, 11:19].all()  # the valid polygon of annotation 1 is kept
    # the ground truth evaluates (pycocotools would fail on the two-point polygons)
    results = [{"image_id": 5, "category_id": a["category_id"], "bbox": a["bbox"],
                "score": 1.0, "segmentation": dataset.coco.annToRLE(a)}
               for a in dataset.coco.anns.values() if not a["iscrowd"]]
    metrics = evaluate(dataset.coco, results, ("bbox", "segm"))
    assert metrics["segm"]["AP"] == pytest.approx(1.0) and metrics["bbox"]["AP"] == pytest.approx(1.0)


def test_an_image_of_another_size_than_its_entry_is_named(tmp_path):
    images_dir, path = _write(tmp_path)
    data = json.loads(path.read_text())
    data["images"][0].update(height=80, width=120)  # the annotations' frame, not the file's
    path.write_text(json.dumps(data))
    dataset = CocoInstances(images_dir, path)
    with pytest.raises(ValueError, match=r"a.png is 40x60 .* gives 80x120 for image id 5"):
        dataset[0]
