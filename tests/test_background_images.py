"""Images with no annotation entries in a COCO json: kept by default as
background images (empty targets that train as negatives), left out of
training with data.drop_empty_images=true, and always evaluated."""

import json

import hydra
import pytest
import torch
from torchvision.io import write_png

from detector.data import CocoInstances
from detector.training import CocoDataModule

from conftest import SPEC


def _write(tmp_path):
    """Four 40x60 images: one with a box and a mask, one with no annotation
    entry, one with a crowd region only, one with none again."""
    images = tmp_path / "images"
    images.mkdir()
    entries = []
    for i in range(1, 5):
        write_png(torch.full((3, 40, 60), 50 * i, dtype=torch.uint8), str(images / f"{i}.png"))
        entries.append({"id": i, "file_name": f"{i}.png", "height": 40, "width": 60})
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 5, 20, 10], "iscrowd": 0,
         "area": 200, "segmentation": [[10, 5, 30, 5, 30, 15, 10, 15]]},
        {"id": 2, "image_id": 3, "category_id": 7, "bbox": [0, 0, 30, 20], "iscrowd": 1,
         "area": 600, "segmentation": [[0, 0, 30, 0, 30, 20, 0, 20]]},
    ]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": entries, "annotations": annotations,
                                "categories": [{"id": 7, "name": "thing"}]}))
    return {"images": str(images), "annotations": str(path)}


def test_background_images_are_kept_with_empty_targets(tmp_path):
    split = _write(tmp_path)
    dataset = CocoInstances(split["images"], split["annotations"])
    assert len(dataset) == 4
    for index in (1, 2, 3):
        image, target = dataset[index]
        assert image.shape == (3, 40, 60)
        assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
        assert target["masks"].shape == (0, 40, 60) and target["has_mask"].shape == (0,)


def test_a_background_image_trains_as_negatives(tmp_path):
    split = _write(tmp_path)
    data = CocoDataModule(split, split, batch_size=2, flip_probability=1.0)
    images, targets = zip(*(data.dataset("train")[i, 0] for i in (1, 3)))
    model = hydra.utils.instantiate({**SPEC, "num_classes": 2})
    model.train()
    losses = model(list(images), list(targets))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_classifier"] > 0 and losses["loss_rpn_objectness"] > 0
    # nothing to regress or segment: those losses are zero, yet the step learns
    assert losses["loss_box_reg"] == 0 and losses["loss_rpn_box"] == 0
    assert losses["loss_mask"] == 0
    sum(losses.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("drop", [False, True])
def test_drop_empty_images_setting(tmp_path, drop):
    split = _write(tmp_path)
    data = CocoDataModule(split, split, test=split, batch_size=2, drop_empty_images=drop)
    train = data.dataset("train")
    assert train.image_ids == ([1] if drop else [1, 2, 3, 4])
    assert len(list(data.train_dataloader())) == (1 if drop else 2)
    assert data.dataset("val").image_ids == [1, 2, 3, 4]  # evaluation scores every image
    assert data.dataset("test").image_ids == [1, 2, 3, 4]


def test_dropping_every_image_is_an_error(tmp_path):
    split = _write(tmp_path)
    path = tmp_path / "empty.json"
    data = json.loads(open(split["annotations"]).read())
    data["annotations"] = []
    path.write_text(json.dumps(data))
    empty = {**split, "annotations": str(path)}
    with pytest.raises(ValueError, match="data.drop_empty_images=true left no training image"):
        CocoDataModule(empty, split, drop_empty_images=True).dataset("train")
