"""COCO evaluation on hand-made predictions with hand-computed answers."""

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from pycocotools.coco import COCO

from detector.evaluation import METRICS, evaluate, format_table, to_coco_results


def _ground_truth():
    """Two 200x200 images; a 100x100 square (category 7) in each, at (20, 30) and (50, 60)."""
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


def test_perfect_predictions_score_one():
    results = to_coco_results([_detection(20, 30), _detection(50, 60)], [1, 2], {1: 7})
    metrics = evaluate(_ground_truth(), results)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == pytest.approx(1.0)
        assert metrics[iou_type]["AP50"] == pytest.approx(1.0)
        assert metrics[iou_type]["APl"] == pytest.approx(1.0)
        assert metrics[iou_type]["APs"] == -1.0  # no small objects in the ground truth


def test_known_shift_gives_known_ap():
    """Shifting every prediction 10 px right gives IoU 90*100 / (110*100) = 0.818:
    a match at the IoU thresholds 0.50 ... 0.80 (7 of the 10), so AP = 0.7,
    AP50 = AP75 = 1."""
    results = to_coco_results([_detection(30, 30), _detection(60, 60)], [1, 2], {1: 7})
    metrics = evaluate(_ground_truth(), results)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == pytest.approx(0.7)
        assert metrics[iou_type]["AP50"] == pytest.approx(1.0)
        assert metrics[iou_type]["AP75"] == pytest.approx(1.0)


def test_a_missed_image_halves_recall():
    """One of two objects found: precision 1 up to recall 0.5, so AP = 0.5
    (101-point interpolation: 51 of 101 recall points, 51/101)."""
    results = to_coco_results([_detection(20, 30), {k: v[:0] for k, v in
                                                    _detection(0, 0).items()}], [1, 2], {1: 7})
    ap = evaluate(_ground_truth(), results, ("bbox",))["bbox"]["AP"]
    assert ap == pytest.approx(51 / 101)


def test_no_detections_and_bad_arguments():
    assert evaluate(_ground_truth(), []) == {t: dict.fromkeys(METRICS, 0.0)
                                             for t in ("bbox", "segm")}
    with pytest.raises(ValueError, match="iou_type must be 'bbox' or 'segm', got 'keypoints'"):
        evaluate(_ground_truth(), [], ("keypoints",))
    with pytest.raises(ValueError, match="label 3 has no COCO category"):
        det = _detection(20, 30)
        det["labels"] = torch.tensor([3])
        to_coco_results([det], [1], {1: 7})
    table = format_table({"bbox": dict.fromkeys(METRICS, 0.5)})
    assert "| bbox | 50.0 | 50.0 |" in table
