"""COCO evaluation on hand-made predictions with hand-computed answers, by both
backends (faster-coco-eval, the default, and pycocotools, the reference), and
the two agreeing to 1e-4 on a whole noisy validation set."""

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from pycocotools.coco import COCO

from detector.evaluation import ALL_METRICS, BACKENDS, METRICS, evaluate, format_table, to_coco_results


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _ground_truth(crowd: bool = False):
    """Two 200x200 images; a 100x100 square (category 7) in each, at (20, 30) and
    (50, 60); with ``crowd``, also a crowd region of category 7 at x 130-190,
    y 140-195 in image 1."""
    images, annotations = [], []
    for image_id, (x, y) in ((1, (20, 30)), (2, (50, 60))):
        mask = np.zeros((200, 200), dtype=np.uint8)
        mask[y:y + 100, x:x + 100] = 1
        rle = mask_utils.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode("ascii")
        images.append({"id": image_id, "height": 200, "width": 200, "file_name": f"{image_id}.png"})
        annotations.append({"id": image_id, "image_id": image_id, "category_id": 7,
                            "bbox": [x, y, 100, 100], "area": 10000, "iscrowd": 0,
                            "segmentation": rle})
    if crowd:
        mask = np.zeros((200, 200), dtype=np.uint8)
        mask[140:195, 130:190] = 1
        annotations.append({"id": 3, "image_id": 1, "category_id": 7, "bbox": [130, 140, 60, 55],
                            "area": 3300, "iscrowd": 1, "segmentation": _rle(mask)})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": 7, "name": "square"}]}
    coco.createIndex()
    return coco


def _detection(x, y, score=0.9):
    masks = torch.zeros(1, 1, 200, 200)
    masks[0, 0, y:y + 100, x:x + 100] = 0.8
    return {"boxes": torch.tensor([[float(x), float(y), x + 100.0, y + 100.0]]),
            "labels": torch.tensor([1]), "scores": torch.tensor([score]), "masks": masks}


@pytest.mark.parametrize("backend", BACKENDS)
def test_perfect_predictions_score_one(backend):
    results = to_coco_results([_detection(20, 30), _detection(50, 60)], [1, 2], {1: 7})
    metrics = evaluate(_ground_truth(), results, backend=backend)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == pytest.approx(1.0)
        assert metrics[iou_type]["AP50"] == pytest.approx(1.0)
        assert metrics[iou_type]["APl"] == pytest.approx(1.0)
        assert metrics[iou_type]["APs"] == -1.0  # no small objects in the ground truth


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_shift_gives_known_ap(backend):
    """Shifting every prediction 10 px right gives IoU 90*100 / (110*100) = 0.818:
    a match at the IoU thresholds 0.50 ... 0.80 (7 of the 10), so AP = 0.7,
    AP50 = AP75 = 1."""
    results = to_coco_results([_detection(30, 30), _detection(60, 60)], [1, 2], {1: 7})
    metrics = evaluate(_ground_truth(), results, backend=backend)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == pytest.approx(0.7)
        assert metrics[iou_type]["AP50"] == pytest.approx(1.0)
        assert metrics[iou_type]["AP75"] == pytest.approx(1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_missed_image_halves_recall(backend):
    """One of two objects found: precision 1 up to recall 0.5, so AP = 0.5
    (101-point interpolation: 51 of 101 recall points, 51/101)."""
    results = to_coco_results([_detection(20, 30), {k: v[:0] for k, v in
                                                    _detection(0, 0).items()}], [1, 2], {1: 7})
    ap = evaluate(_ground_truth(), results, ("bbox",), backend=backend)["bbox"]["AP"]
    assert ap == pytest.approx(51 / 101)


@pytest.mark.parametrize("backend", BACKENDS)
def test_detections_in_a_crowd_region_are_ignored(backend):
    """A detection inside the crowd region, scored above the true ones, is
    neither a match nor a false positive: AP stays 1. Without the crowd
    annotation it is a false positive ranked first: precision 0, 1/2, 2/3
    after each detection, interpolated (the best precision at any recall at
    least as high) to 2/3 at every recall point, so AP50 = 2/3."""
    inside = {"boxes": torch.tensor([[135.0, 145.0, 185.0, 190.0]]), "labels": torch.tensor([1]),
              "scores": torch.tensor([0.95]), "masks": torch.zeros(1, 1, 200, 200)}
    inside["masks"][0, 0, 145:190, 135:185] = 0.9
    first = _detection(20, 30)
    merged = {k: torch.cat([inside[k], first[k]]) for k in first}
    results = to_coco_results([merged, _detection(50, 60)], [1, 2], {1: 7})
    with_crowd = evaluate(_ground_truth(crowd=True), results, backend=backend)
    without = evaluate(_ground_truth(), results, backend=backend)
    for iou_type in ("bbox", "segm"):
        assert with_crowd[iou_type]["AP"] == pytest.approx(1.0)
        assert without[iou_type]["AP50"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_detections_and_bad_arguments(backend):
    assert evaluate(_ground_truth(), [], backend=backend) == {
        t: dict.fromkeys(ALL_METRICS, 0.0) for t in ("bbox", "segm")}
    with pytest.raises(ValueError, match="backend must be one of"):
        evaluate(_ground_truth(), [], backend="detectron2")
    with pytest.raises(ValueError, match="iou_type must be 'bbox' or 'segm', got 'keypoints'"):
        evaluate(_ground_truth(), [], ("keypoints",))
    with pytest.raises(ValueError, match="label 3 has no COCO category"):
        det = _detection(20, 30)
        det["labels"] = torch.tensor([3])
        to_coco_results([det], [1], {1: 7})
    table = format_table({"bbox": dict.fromkeys(METRICS, 0.5)})
    assert "| bbox | 50.0 | 50.0 |" in table


def noisy_results(coco: COCO, seed: int = 0) -> list[dict]:
    """The ground truth made into detections as an imperfect detector's: boxes
    jittered, masks eroded or dilated, random scores, a fifth missed, and false
    positives; COCO results with RLE masks."""
    rng = np.random.default_rng(seed)
    results = []
    categories = coco.getCatIds()
    for image in coco.dataset["images"]:
        height, width = image["height"], image["width"]
        for ann in coco.imgToAnns[image["id"]]:
            if ann.get("iscrowd", 0) or rng.random() < 0.2:
                continue
            x, y, w, h = ann["bbox"]
            dx, dy, dw, dh = rng.normal(0, 0.08, 4) * [w, h, w, h]
            mask = coco.annToMask(ann)
            shift = int(rng.integers(-2, 3))
            mask = np.roll(mask, shift, axis=int(rng.integers(0, 2)))
            results.append({"image_id": image["id"], "category_id": ann["category_id"],
                            "bbox": [x + dx, y + dy, max(w + dw, 1.0), max(h + dh, 1.0)],
                            "score": float(rng.uniform(0.3, 1.0)), "segmentation": _rle(mask)})
        for _ in range(int(rng.integers(0, 3))):  # false positives
            w, h = rng.uniform(5, width / 3), rng.uniform(5, height / 3)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            mask = np.zeros((height, width), dtype=np.uint8)
            mask[int(y):int(y + h), int(x):int(x + w)] = 1
            results.append({"image_id": image["id"], "category_id": int(rng.choice(categories)),
                            "bbox": [x, y, w, h], "score": float(rng.uniform(0.0, 0.8)),
                            "segmentation": _rle(mask)})
    return results


def test_backends_agree_on_a_validation_set(tmp_path):
    """faster-coco-eval against pycocotools on the synthetic validation images
    (six classes, objects of every size) with imperfect detections: every
    metric within 1e-4, for boxes and masks, on all images and on a subset."""
    from detector.data.builders.synthetic import make_synthetic_coco

    images, annotations = make_synthetic_coco(tmp_path, "val", num_images=30,
                                              image_size=(128, 160), seed=3)
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(annotations))
    results = noisy_results(coco)
    for image_ids in (None, coco.getImgIds()[::2]):
        ours = evaluate(coco, results, image_ids=image_ids, backend="faster_coco_eval")
        reference = evaluate(coco, results, image_ids=image_ids, backend="pycocotools")
        assert 0.2 < reference["bbox"]["AP"] < 0.9  # a case with something to get wrong
        for iou_type in ("bbox", "segm"):
            for metric in ALL_METRICS:
                assert ours[iou_type][metric] == pytest.approx(
                    reference[iou_type][metric], abs=1e-4), (iou_type, metric, image_ids)
