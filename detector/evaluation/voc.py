"""Pascal VOC 2007's detection metric (11-point interpolated AP at IoU 0.5),
from the same inputs as detector.evaluation.evaluate: a pycocotools COCO
ground truth and COCO-format box results."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO

IOU_THRESHOLD = 0.5
# the recall points, as the Python devkit (py-faster-rcnn, detectron2) builds
# them; np.arange's rounding (0.30000000000000004, ...) is kept on purpose so
# that ties at those recalls score as they do there
RECALL_POINTS = np.arange(0.0, 1.1, 0.1)


def _xyxy(bbox: Sequence[float]) -> np.ndarray:
    x, y, w, h = bbox
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with [G, 4] boxes, all (x1, y1, x2, y2) continuous pixels."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    union = ((box[2] - box[0]) * (box[3] - box[1])
             + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _eleven_point_ap(tp: np.ndarray, fp: np.ndarray, num_positives: int) -> float:
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / num_positives
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return float(sum(precision[recall >= t].max() if (recall >= t).any() else 0.0
                     for t in RECALL_POINTS) / len(RECALL_POINTS))


def _class_ap(gt: dict[int, tuple[np.ndarray, np.ndarray]],
              detections: list[tuple[int, np.ndarray, float]]) -> float:
    """The devkit's greedy matching of one class: ``gt`` maps image id to
    (boxes [G, 4], difficult [G]), ``detections`` are (image id, box, score)."""
    num_positives = sum(int((~difficult).sum()) for _, difficult in gt.values())
    if num_positives == 0:
        return math.nan
    scores = np.array([score for _, _, score in detections], dtype=np.float64)
    order = np.argsort(-scores, kind="stable")  # ties keep the order of the results
    taken = {image_id: np.zeros(len(boxes), dtype=bool) for image_id, (boxes, _) in gt.items()}
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for rank, d in enumerate(order):
        image_id, box, _ = detections[d]
        boxes, difficult = gt.get(image_id, (np.zeros((0, 4)), np.zeros(0, dtype=bool)))
        overlaps = _iou(box, boxes) if len(boxes) else np.zeros(0)
        best = int(overlaps.argmax()) if len(overlaps) else -1
        if best < 0 or overlaps[best] <= IOU_THRESHOLD:
            fp[rank] = 1
        elif difficult[best]:
            continue  # neither true nor false positive
        elif taken[image_id][best]:
            fp[rank] = 1  # a duplicate of a ground truth already found
        else:
            tp[rank] = 1
            taken[image_id][best] = True
    return _eleven_point_ap(tp, fp, num_positives)


def voc07_ap50_per_class(coco_gt: COCO, results: list[dict],
                         image_ids: Sequence[int] | None = None) -> dict:
    """{"AP50_voc07": mean AP, "category_ids": [...], "per_class": [AP of each
    category id, in that order]}, all in [0, 1].

    PASCAL VOC 2007's metric, as its devkit (and its Python ports in
    py-faster-rcnn and detectron2) computes it, per class: detections sorted
    by descending score (a stable sort, so ties keep the order of
    ``results``), each matched to the ground truth box of its image it
    overlaps most; IoU above 0.5 with a box not yet taken is a true positive,
    with a taken one (a duplicate) or at most 0.5 a false positive. Ground
    truth with ``iscrowd=1`` plays VOC's "difficult": it does not count as a
    positive, and a detection matched to it is neither true nor false. AP is
    the mean, over recall 0, 0.1, ..., 1, of the best precision at that recall
    or more (0 where the recall is never reached).

    Unlike the devkit, the IoU has no "+1": boxes here are continuous
    (x1, y1, x2, y2) pixels, not 1-based inclusive ones. Only boxes are
    evaluated (masks in the results are ignored). A class without any
    non-difficult ground truth scores NaN and is left out of the mean (which
    is NaN when no class has any). Restricted to ``image_ids`` when given
    (default: every image of coco_gt); results on other images are ignored.
    """
    known = set(coco_gt.imgs)
    selected = known if image_ids is None else {int(i) for i in image_ids}
    if not selected <= known:
        raise ValueError(f"voc07_ap50: image ids {sorted(selected - known)[:5]} are not in "
                         "the ground truth")
    category_ids = sorted(coco_gt.cats)
    gt: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    for image_id in selected:
        anns = coco_gt.imgToAnns.get(image_id, [])
        for category_id in {a["category_id"] for a in anns}:
            mine = [a for a in anns if a["category_id"] == category_id]
            gt[category_id][image_id] = (np.stack([_xyxy(a["bbox"]) for a in mine]),
                                         np.array([bool(a.get("iscrowd", 0)) for a in mine]))
    detections: dict[int, list[tuple[int, np.ndarray, float]]] = defaultdict(list)
    for i, result in enumerate(results):
        image_id, category_id = result.get("image_id"), result.get("category_id")
        if image_id not in known:
            raise ValueError(f"voc07_ap50: result {i} has image_id {image_id!r}, not in the "
                             "ground truth")
        if category_id not in coco_gt.cats:
            raise ValueError(f"voc07_ap50: result {i} has category_id {category_id!r}, not in "
                             "the ground truth")
        if image_id in selected:
            detections[category_id].append((image_id, _xyxy(result["bbox"]),
                                            float(result["score"])))
    per_class = [_class_ap(gt[c], detections[c]) for c in category_ids]
    scored = [ap for ap in per_class if not math.isnan(ap)]
    mean = sum(scored) / len(scored) if scored else math.nan
    return {"AP50_voc07": mean, "category_ids": category_ids, "per_class": per_class}


def voc07_ap50(coco_gt: COCO, results: list[dict],
               image_ids: Sequence[int] | None = None) -> float:
    """The mean over classes of voc07_ap50_per_class."""
    return voc07_ap50_per_class(coco_gt, results, image_ids)["AP50_voc07"]
