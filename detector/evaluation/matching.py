"""The matching that the confusion matrix and the error breakdown share: per
image, the detections' overlaps with every ground-truth instance (boxes or
masks, through pycocotools' own IoU: for a crowd region, the part of the
detection inside it), and COCO's greedy matching within one class."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pycocotools.mask as mask_utils
from pycocotools.coco import COCO


@dataclass
class Image:
    """One image's ground truth and detections (score-sorted, best first) and
    their overlaps ``iou`` [detections, ground truth]."""
    image_id: int
    gt: list[dict]
    detections: list[dict]
    iou: np.ndarray

    @property
    def gt_classes(self) -> np.ndarray:
        return np.array([a["category_id"] for a in self.gt], dtype=np.int64)

    @property
    def crowd(self) -> np.ndarray:
        return np.array([bool(a.get("iscrowd", 0)) for a in self.gt], dtype=bool)


def _geometry(item: dict, iou_type: str, coco: COCO | None = None):
    if iou_type == "bbox":
        return [float(v) for v in item["bbox"]]
    return coco.annToRLE(item) if coco is not None else item["segmentation"]


def images(coco_gt: COCO, results: Sequence[dict], iou_type: str = "bbox",
           image_ids: Sequence[int] | None = None, score_threshold: float = 0.0,
           max_detections: int | None = None) -> list[Image]:
    """The evaluated images (``image_ids``, default all of coco_gt), each with
    its detections scoring at least ``score_threshold``, sorted by score (a
    stable sort: ties keep the results' order), at most ``max_detections`` per
    class (COCO's 100 per image and class)."""
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    selected = sorted(coco_gt.imgs) if image_ids is None else sorted({int(i) for i in image_ids})
    unknown = set(selected) - set(coco_gt.imgs)
    if unknown:
        raise ValueError(f"image ids {sorted(unknown)[:5]} are not in the ground truth")
    by_image = defaultdict(list)
    for i, r in enumerate(results):
        if r.get("image_id") not in coco_gt.imgs:
            raise ValueError(f"result {i} has image_id {r.get('image_id')!r}, not in the "
                             "ground truth")
        if r.get("category_id") not in coco_gt.cats:
            raise ValueError(f"result {i} has category_id {r.get('category_id')!r}, not in "
                             "the ground truth")
        if iou_type == "segm" and "segmentation" not in r:
            raise ValueError(f"result {i} has no 'segmentation' (iou_type='segm' needs masks)")
        if float(r["score"]) >= score_threshold:
            by_image[r["image_id"]].append(r)
    out = []
    for image_id in selected:
        dets = sorted(by_image.get(image_id, []), key=lambda r: -float(r["score"]))
        if max_detections is not None:
            per_class = defaultdict(int)
            kept = []
            for d in dets:
                per_class[d["category_id"]] += 1
                if per_class[d["category_id"]] <= max_detections:
                    kept.append(d)
            dets = kept
        gt = coco_gt.imgToAnns.get(image_id, [])
        if dets and gt:
            iou = np.asarray(mask_utils.iou(
                [_geometry(d, iou_type) for d in dets],
                [_geometry(a, iou_type, coco_gt) for a in gt],
                [int(bool(a.get("iscrowd", 0))) for a in gt]), dtype=np.float64)
        else:
            iou = np.zeros((len(dets), len(gt)))
        out.append(Image(image_id, list(gt), dets, iou.reshape(len(dets), len(gt))))
    return out


IGNORED = -2  # a detection matched to a crowd region: neither right nor wrong
UNMATCHED = -1


def match_class(image: Image, category_id: int, threshold: float) -> dict[int, int]:
    """COCO's matching of one class in one image: each detection of the class,
    best score first, takes the unmatched non-crowd instance of the class it
    overlaps most (IoU at least ``threshold``), else a crowd region it lies
    in (IGNORED), else nothing (UNMATCHED). Returns {detection index: ground
    truth index or IGNORED / UNMATCHED}."""
    classes, crowd = image.gt_classes, image.crowd
    mine = classes == category_id
    taken = np.zeros(len(image.gt), dtype=bool)
    out = {}
    for d, det in enumerate(image.detections):
        if det["category_id"] != category_id:
            continue
        row = image.iou[d]
        free = mine & ~crowd & ~taken & (row >= threshold)
        if free.any():
            candidates = np.flatnonzero(free)[::-1]  # the last of equals, as COCOeval
            g = int(candidates[np.argmax(row[candidates])])
            taken[g] = True
            out[d] = g
        elif (mine & crowd & (row >= threshold)).any():
            out[d] = IGNORED
        else:
            out[d] = UNMATCHED
    return out
