"""A gallery of the images with the most errors: each image's ground truth
beside its detections, the errors marked, as the confusion matrix counts
them (detections above its score threshold, matched at its IoU)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from pycocotools.coco import COCO
from torchvision.io import write_png
from torchvision.utils import draw_bounding_boxes

from ..visualization.drawing import fit_within, grid
from .confusion import match_image
from .matching import images

RIGHT, WRONG, MISSED, TRUTH = "limegreen", "red", "orange", "deepskyblue"


def worst_images(confusion: Mapping, count: int) -> list[int]:
    """The ``count`` image ids with the most errors (missed instances, wrong
    classes, unmatched detections), most first; images without errors are
    left out."""
    ranked = sorted(((v["errors"], -int(i)) for i, v in confusion["per_image"].items()
                     if v["errors"]), reverse=True)
    return [-i for _, i in ranked[:count]]


def _xyxy(bbox: Sequence[float]) -> list[float]:
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def _boxes(image: torch.Tensor, boxes: list, labels: list[str], colors: list[str]) -> torch.Tensor:
    if not boxes:
        return image
    return draw_bounding_boxes(image, torch.tensor(boxes, dtype=torch.float64), labels=labels,
                               colors=colors, width=2)


def draw_errors(image: torch.Tensor, coco_gt: COCO, results: Sequence[dict], image_id: int,
                score_threshold: float, iou_threshold: float) -> list[torch.Tensor]:
    """[ground truth (found: blue, missed: orange), detections (right:
    green, wrong class or matching nothing: red)] for one uint8 [3, H, W] image."""
    (matched,) = images(coco_gt, results, "bbox", [image_id], score_threshold)
    taken_by, matches = match_image(matched, iou_threshold)
    names = {c: str(v.get("name", c)) for c, v in coco_gt.cats.items()}
    gt = [(a, d) for a, d in zip(matched.gt, taken_by) if not a.get("iscrowd", 0)]
    truth = _boxes(image, [_xyxy(a["bbox"]) for a, _ in gt],
                   [names[a["category_id"]] + ("" if d is not None else " missed") for a, d in gt],
                   [TRUTH if d is not None else MISSED for _, d in gt])
    colors, labels = [], []
    for det, g in zip(matched.detections, matches):
        right = g is not None and (g < 0 or matched.gt[g]["category_id"] == det["category_id"])
        colors.append(RIGHT if right else WRONG)
        labels.append(f"{names[det['category_id']]} {det['score']:.2f}")
    predicted = _boxes(image, [_xyxy(d["bbox"]) for d in matched.detections], labels, colors)
    return [truth, predicted]


def draw_gallery(coco_gt: COCO, results: Sequence[dict], confusion: Mapping,
                 read_image: Callable[[int], torch.Tensor], path: str | os.PathLike,
                 count: int = 6, max_side: int = 400) -> Path | None:
    """The ``count`` images with the most errors, one row each, written to
    ``path`` (whole or not at all); None when no image has an error."""
    chosen = worst_images(confusion, count)
    if not chosen:
        return None
    rows = []
    for image_id in chosen:
        pair = draw_errors(read_image(image_id), coco_gt, results, image_id,
                           confusion["score_threshold"], confusion["iou_threshold"])
        rows.append([fit_within(p, max_side) for p in pair])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    write_png(grid(rows), str(partial))
    os.replace(partial, path)
    return path
