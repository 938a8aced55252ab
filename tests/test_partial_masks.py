"""Instances without a mask (box-only annotations, alone or beside masked
ones): the per-instance ``has_mask`` flag through the data pipeline, the mask
loss that leaves them out, and ``segm`` evaluation that ignores them."""

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from torchvision import tv_tensors
from torchvision.io import write_png

from conftest import SPEC
from detector.data.coco import CocoInstances, detection_transforms
from detector.evaluation import evaluate
from detector.loading.spec import build_model

SQUARE = [[10, 5, 20, 5, 20, 15, 10, 15]]


def _write(tmp_path, segmentations):
    """One 40x60 image with one instance per entry of ``segmentations`` (None:
    the key left out), each in its own 10x10 box along the top."""
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    write_png(torch.full((3, 40, 60), 90, dtype=torch.uint8), str(images / "a.png"))
    annotations = []
    for i, segmentation in enumerate(segmentations):
        ann = {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [10 + 15 * i, 5, 10, 10],
               "iscrowd": 0, "area": 100}
        if segmentation is not None:
            ann["segmentation"] = segmentation
        annotations.append(ann)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "height": 40,
                                            "width": 60}],
                                "annotations": annotations,
                                "categories": [{"id": 1, "name": "thing"}]}))
    return images, path


def test_has_mask_flags_and_counts(tmp_path):
    """No ``segmentation`` key and an empty list both mean: no mask."""
    shifted = [[55, 5, 60, 5, 60, 15, 55, 15]]  # the fourth box, clipped to the image
    dataset = CocoInstances(*_write(tmp_path, [SQUARE, None, [], shifted]))
    _, target = dataset[0]
    assert target["has_mask"].tolist() == [True, False, False, True]
    assert [int(m.sum()) > 0 for m in target["masks"]] == [True, False, False, True]
    assert dataset.mask_counts[:2] == (2, 4) and dataset.mask_counts.source.name == "ann.json"
    assert dataset.has_masks
    (tmp_path / "b").mkdir()
    box_only = CocoInstances(*_write(tmp_path / "b", [None, []]))
    assert not box_only.has_masks and box_only.mask_counts[:2] == (0, 2)
    assert box_only[0][1]["has_mask"].tolist() == [False, False]


def test_the_flip_pipeline_keeps_has_mask_aligned():
    """SanitizeBoundingBoxes drops an instance: labels, masks and has_mask
    lose the same entry (a flag left behind would shift onto a neighbour)."""
    transform = detection_transforms(True, flip_probability=1.0)
    boxes = torch.tensor([[0.0, 0.0, 0.5, 10.0], [10, 5, 20, 15], [30, 5, 40, 15]])
    masks = torch.zeros(3, 40, 60, dtype=torch.uint8)
    masks[2, 5:15, 30:40] = 1
    target = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(40, 60)),
              "labels": torch.tensor([1, 2, 3]), "masks": tv_tensors.Mask(masks),
              "has_mask": torch.tensor([True, False, True]), "image_id": 1}
    _, out = transform(tv_tensors.Image(torch.zeros(3, 40, 60, dtype=torch.uint8)), target)
    assert out["labels"].tolist() == [2, 3]
    assert out["has_mask"].tolist() == [False, True]
    assert out["masks"][1].sum() == 100 and out["masks"][0].sum() == 0
    assert out["boxes"].tolist() == [[40, 5, 50, 15], [20, 5, 30, 15]]  # flipped


def _mask_loss(model, targets, seed=0):
    torch.manual_seed(seed)  # the same anchors and proposals sampled each time
    return model([torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(1))],
                 targets)["loss_mask"]


def test_instances_without_a_mask_take_no_part_in_the_mask_loss():
    torch.manual_seed(0)
    model = build_model({**SPEC, "num_classes": 3}).train()
    boxes = torch.tensor([[10.0, 10, 50, 60], [60, 20, 110, 80]])
    filled = torch.zeros(2, 96, 128, dtype=torch.uint8)
    filled[0, 10:60, 10:50] = 1
    filled[1, 20:80, 60:110] = 1
    emptied = filled.clone()
    emptied[1] = 0  # what a box-only instance's mask target is

    def target(masks, has_mask):
        return [{"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks,
                 "has_mask": torch.tensor(has_mask)}]

    # the second instance's mask matters while it is flagged as having one ...
    assert not torch.allclose(_mask_loss(model, target(filled, [True, True])),
                              _mask_loss(model, target(emptied, [True, True])))
    # ... and is left out of the loss when it is not
    without = _mask_loss(model, target(filled, [True, False]))
    assert torch.allclose(without, _mask_loss(model, target(emptied, [True, False])))
    # with no masked instance at all the loss is zero, still part of the graph
    none = _mask_loss(model, target(filled, [False, False]))
    assert none.item() == 0.0 and none.requires_grad
    assert without.item() > 0


def test_has_mask_is_checked_at_the_models_edge():
    model = build_model({**SPEC, "num_classes": 3}).train()
    target = {"boxes": torch.tensor([[10.0, 10, 50, 60]]), "labels": torch.tensor([1]),
              "masks": torch.zeros(1, 96, 128, dtype=torch.uint8),
              "has_mask": torch.tensor([1, 0])}
    with pytest.raises(ValueError, match=r"targets\[0\]\['has_mask'\] must be bool \[1\]"):
        model([torch.rand(3, 96, 128)], [target])


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_segm_evaluation_ignores_instances_without_a_mask(tmp_path, backend):
    """Instance 1 has a mask, instance 2 only a box. A perfect mask on 1 and a
    higher-scoring mask inside 2's box: 2's unknown mask makes that detection
    neither right nor wrong, so segm AP is 1 (were 2 left out of the ground
    truth, the detection would be a false positive ranked first: AP 0.5)."""
    coco = CocoInstances(*_write(tmp_path, [SQUARE, None])).coco

    def rle(x0, y0=5):
        mask = np.zeros((40, 60), dtype=np.uint8, order="F")
        mask[y0:y0 + 10, x0:x0 + 10] = 1
        encoded = mask_utils.encode(mask)
        return {"size": encoded["size"], "counts": encoded["counts"].decode("ascii")}

    results = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 5, 10, 10], "score": 0.8,
         "segmentation": rle(10)},
        {"image_id": 1, "category_id": 1, "bbox": [25, 5, 10, 10], "score": 0.9,
         "segmentation": rle(25)},
    ]
    metrics = evaluate(coco, results, ("bbox", "segm"), backend=backend)
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)  # both boxes are ground truth
    assert metrics["segm"]["AP"] == pytest.approx(1.0)
    # a mask elsewhere is still a false positive: first-ranked, it halves the precision
    stray = {"image_id": 1, "category_id": 1, "bbox": [45, 25, 10, 10], "score": 0.95,
             "segmentation": rle(45, 25)}
    metrics = evaluate(coco, results + [stray], ("segm",), backend=backend)
    assert metrics["segm"]["AP"] == pytest.approx(0.5)
    assert "segmentation" not in coco.dataset["annotations"][1]  # the caller's left as it was
