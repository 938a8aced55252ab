"""The confusion matrix of a detector: which class each ground-truth box was
taken for, or whether it was missed, and which detections matched nothing.

Rows are the ground truth's classes and a last "background" row (detections
that matched no instance); columns are the predicted classes and a last
"background" column (instances no detection matched). Only detections scoring
at least ``score_threshold`` count. In each image, detections best score
first take the unmatched instance of their own class they overlap most at IoU
at least ``iou_threshold``; then those left, best first, take in the same way
an instance of another class (a confusion): a right detection is never
stolen by a better-scored wrong one. Crowd regions are neither found nor missed, and a
detection inside one is left out. Every instance is in exactly one cell of
its row, every detection in exactly one cell of its column."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO

from .matching import Image, images

BACKGROUND = "background"


def match_image(image: Image, iou_threshold: float) -> tuple[list[int | None], list[int | None]]:
    """(for each instance, the index of the detection that took it or None;
    for each detection, the index of its instance, None for none, -1 when
    it lies in a crowd region of its own class, which COCOeval ignores too). Two rounds, each best score first: detections
    take instances of their own class, then those left take instances of
    another class."""
    classes, crowd = image.gt_classes, image.crowd
    taken_by: list[int | None] = [None] * len(image.gt)
    matched: list[int | None] = [None] * len(image.detections)
    for own_class in (True, False):
        for d, det in enumerate(image.detections):
            if matched[d] is not None:
                continue
            row = image.iou[d]
            free = ~crowd & (row >= iou_threshold) & np.array([t is None for t in taken_by], bool)
            free &= (classes == det["category_id"]) if own_class else np.ones_like(free)
            if free.any():
                candidates = np.flatnonzero(free)
                g = int(candidates[np.argmax(row[candidates])])
                taken_by[g], matched[d] = d, g
    for d in range(len(image.detections)):
        own = classes == image.detections[d]["category_id"]
        if matched[d] is None and (crowd & own & (image.iou[d] >= iou_threshold)).any():
            matched[d] = -1
    return taken_by, matched


def confusion_matrix(coco_gt: COCO, results: Sequence[dict],
                     image_ids: Sequence[int] | None = None, score_threshold: float = 0.5,
                     iou_threshold: float = 0.5) -> dict:
    """{"classes": names (then "background"), "category_ids", "matrix": counts
    [K + 1][K + 1] (rows: ground truth, columns: predictions; see the module's
    docstring), "score_threshold", "iou_threshold", "per_image": {image id:
    {"errors", "missed", "wrong_class", "unmatched"}}}, on boxes."""
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    category_ids = sorted(coco_gt.cats)
    index = {c: k for k, c in enumerate(category_ids)}
    k = len(category_ids)
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    per_image = {}
    for image in images(coco_gt, results, "bbox", image_ids, score_threshold):
        taken_by, matched = match_image(image, iou_threshold)
        counts = {"missed": 0, "wrong_class": 0, "unmatched": 0}
        for g, ann in enumerate(image.gt):
            if ann.get("iscrowd", 0):
                continue
            d = taken_by[g]
            if d is None:
                matrix[index[ann["category_id"]], k] += 1
                counts["missed"] += 1
            else:
                predicted = image.detections[d]["category_id"]
                matrix[index[ann["category_id"]], index[predicted]] += 1
                counts["wrong_class"] += predicted != ann["category_id"]
        for d, det in enumerate(image.detections):
            if matched[d] is None:
                matrix[k, index[det["category_id"]]] += 1
                counts["unmatched"] += 1
        per_image[image.image_id] = {"errors": sum(counts.values()), **counts}
    names = [str(coco_gt.cats[c].get("name", c)) for c in category_ids]
    return {"classes": names + [BACKGROUND], "category_ids": category_ids,
            "matrix": matrix.tolist(), "score_threshold": score_threshold,
            "iou_threshold": iou_threshold, "per_image": per_image}
