"""COCO evaluation of detections, for boxes and masks: pycocotools' COCOeval, or
faster-coco-eval's drop-in COCOeval_faster (the default: the same metrics,
checked against pycocotools to 1e-4 by the tests, in less time). One pass
gives the overall AP and AR and, from the same accumulated arrays, the
per-class metrics (see detector.evaluation.per_class)."""

from __future__ import annotations

import contextlib
import copy
import io
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pycocotools.mask as mask_utils
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.instances import has_segmentation
from .per_class import AR_METRICS, per_class_rows, pr_curves

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
ALL_METRICS = METRICS + AR_METRICS  # COCOeval's 12 summary numbers, in its order
BACKENDS = ("faster_coco_eval", "pycocotools")


def to_coco_results(detections: Sequence[Mapping[str, torch.Tensor]], image_ids: Sequence[int],
                    label_to_category: Mapping[int, int],
                    mask_threshold: float = 0.5) -> list[dict]:
    """Per-image detections (boxes x1y1x2y2, labels, scores, optional masks
    [N, 1, H, W] probabilities) → COCO result entries: bbox as [x, y, w, h],
    the category id of each label, and the mask binarized at mask_threshold as
    RLE."""
    results = []
    for det, image_id in zip(detections, image_ids):
        boxes = det["boxes"].detach().cpu().to(torch.float64)
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        labels = det["labels"].tolist()
        scores = det["scores"].tolist()
        rles = None
        if "masks" in det:
            binary = (det["masks"][:, 0] >= mask_threshold).cpu().numpy().astype(np.uint8)
            rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
        for j, (box, label, score) in enumerate(zip(xywh, labels, scores)):
            if label not in label_to_category:
                raise ValueError(f"image {image_id}: label {label} has no COCO category")
            entry = {"image_id": int(image_id), "category_id": int(label_to_category[label]),
                     "bbox": [round(v, 3) for v in box], "score": float(score)}
            if rles is not None:
                rle = dict(rles[j])
                rle["counts"] = rle["counts"].decode("ascii")
                entry["segmentation"] = rle
            results.append(entry)
    return results


EXTRA_METRICS = ("voc07_ap50",)


def evaluate(coco_gt: COCO, results: list[dict], iou_types: Sequence[str] = ("bbox", "segm"),
             image_ids: Sequence[int] | None = None, extra: Sequence[str] = (),
             backend: str = "faster_coco_eval") -> dict[str, dict[str, float]]:
    """COCO metrics {iou_type: {AP, AP50, AP75, APs, APm, APl, AR1, AR10,
    AR100, ARs, ARm, ARl}} in [0, 1]: evaluate_per_class without the classes."""
    return evaluate_per_class(coco_gt, results, iou_types, image_ids, extra, backend).metrics


class Evaluation(NamedTuple):
    """What one COCOeval pass per iou type gives: ``metrics`` {iou_type:
    {name: value}}, ``per_class`` {iou_type: [row per category]} and
    ``curves`` {iou_type: precision-recall curves} (see per_class.pr_curves)."""
    metrics: dict[str, dict[str, float]]
    per_class: dict[str, list[dict]]
    curves: dict[str, dict]


def evaluate_per_class(coco_gt: COCO, results: list[dict],
                       iou_types: Sequence[str] = ("bbox", "segm"),
                       image_ids: Sequence[int] | None = None, extra: Sequence[str] = (),
                       backend: str = "faster_coco_eval"
                       ) -> Evaluation:
    """Evaluation(metrics, per_class, curves): COCO's 12 summary numbers per iou type (AP as
    above; AR1 / AR10 / AR100: recall with at most 1 / 10 / 100 detections per
    image, ARs / ARm / ARl at 100), and one row per category and iou type (see
    detector.evaluation.per_class.per_class_rows), from one COCOeval pass.

    Restricted to ``image_ids`` when given (default: every image of coco_gt).
    No detections at all scores 0 (COCOeval cannot load an empty result list).
    ``extra`` adds other metrics: "voc07_ap50" is Pascal VOC 2007's 11-point
    box AP at IoU 0.5 (bbox's ``AP50_voc07``, and each bbox row's; see
    detector.evaluation.voc). ``backend``: "faster_coco_eval" or "pycocotools"
    (the reference). Ground-truth instances without a segmentation count in
    ``bbox`` as usual and are crowd regions in ``segm`` (see segm_ground_truth).
    """
    unknown = set(extra) - set(EXTRA_METRICS)
    if unknown:
        raise ValueError(f"evaluate: unknown extra metrics {sorted(unknown)}; known: "
                         f"{list(EXTRA_METRICS)}")
    if backend not in BACKENDS:
        raise ValueError(f"evaluate: backend must be one of {BACKENDS}, got {backend!r}")
    metrics, classes, curves = {}, {}, {}
    for iou_type in iou_types:
        if iou_type not in ("bbox", "segm"):
            raise ValueError(f"evaluate: iou_type must be 'bbox' or 'segm', got {iou_type!r}")
        if iou_type == "segm" and results and "segmentation" not in results[0]:
            raise ValueError("evaluate: 'segm' needs masks in the results")
        gt = segm_ground_truth(coco_gt) if iou_type == "segm" else coco_gt
        if not results:
            metrics[iou_type] = dict.fromkeys(ALL_METRICS, 0.0)
            classes[iou_type] = per_class_rows(gt, None, image_ids)
            continue
        evaluator = (_faster_evaluator if backend == "faster_coco_eval" else
                     _pycocotools_evaluator)(gt, results, iou_type, image_ids)
        # COCOeval reports -1 where a size range has no ground truth.
        metrics[iou_type] = {name: float(value)
                             for name, value in zip(ALL_METRICS, evaluator.stats)}
        classes[iou_type] = per_class_rows(gt, evaluator, image_ids)
        curves[iou_type] = pr_curves(evaluator)
    if "voc07_ap50" in extra:
        from .voc import voc07_ap50_per_class

        voc = voc07_ap50_per_class(coco_gt, results, image_ids)
        metrics.setdefault("bbox", {})["AP50_voc07"] = voc["AP50_voc07"]
        by_id = dict(zip(voc["category_ids"], voc["per_class"]))
        for row in classes.get("bbox", []):
            ap = by_id.get(row["category_id"], math.nan)
            row["AP50_voc07"] = None if math.isnan(ap) else ap
    return Evaluation(metrics, classes, curves)


def segm_ground_truth(coco_gt: COCO) -> COCO:
    """The ground truth that ``segm`` is scored on: an annotation without a
    segmentation (box-only, or an empty list) becomes a crowd region shaped
    as its box. Its mask is unknown, so it is neither found nor missed: a
    detected mask inside the box is ignored, not a false positive, and the
    instance is not in the recall. Made once per ground truth; the ground
    truth itself when every annotation has a segmentation."""
    derived = getattr(coco_gt, "segm_ground_truth", None)
    if derived is not None:
        return derived
    annotations = coco_gt.dataset["annotations"]
    if all(map(has_segmentation, annotations)):
        coco_gt.segm_ground_truth = coco_gt
        return coco_gt
    data = {**coco_gt.dataset, "annotations": [
        ann if has_segmentation(ann) else {**ann, "iscrowd": 1,
                                             "segmentation": [_box_polygon(ann["bbox"])]}
        for ann in annotations]}
    derived = COCO()
    derived.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        derived.createIndex()
    coco_gt.segm_ground_truth = derived
    return derived


def _box_polygon(bbox: Sequence[float]) -> list[float]:
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def _run(evaluator, image_ids: Sequence[int] | None):
    if image_ids is not None:
        evaluator.params.imgIds = sorted(int(i) for i in image_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator


def _own(results: list[dict]) -> list[dict]:
    """Entries loadRes may change (it adds area, id and iscrowd), copied so
    that the caller's list is left as it was."""
    return [{**r, "bbox": list(r["bbox"])} if "bbox" in r else dict(r) for r in results]


def _pycocotools_evaluator(coco_gt: COCO, results, iou_type, image_ids):
    with contextlib.redirect_stdout(io.StringIO()):
        return _run(COCOeval(coco_gt, coco_gt.loadRes(_own(results)), iou_type), image_ids)


def _faster_evaluator(coco_gt: COCO, results, iou_type, image_ids):
    from faster_coco_eval import COCO as FasterCOCO
    from faster_coco_eval import COCOeval_faster

    # the ground truth's own copy in faster-coco-eval's COCO, made once per object
    faster_gt = getattr(coco_gt, "_faster_coco_eval", None)
    if faster_gt is None:
        with contextlib.redirect_stdout(io.StringIO()):
            faster_gt = FasterCOCO(copy.deepcopy(coco_gt.dataset))
        coco_gt._faster_coco_eval = faster_gt
    with contextlib.redirect_stdout(io.StringIO()):
        faster_dt = faster_gt.loadRes(_own(results))
        evaluator = COCOeval_faster(faster_gt, faster_dt, iou_type, print_function=lambda *a: None)
        return _run(evaluator, image_ids)


def format_table(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown tables of the metrics in percent, AP then AR (-: no ground
    truth in that range), and any other metric on a line of its own."""
    lines, extra = [], []
    for names in (METRICS, AR_METRICS):
        rows = [(t, v) for t, v in metrics.items() if names is METRICS or names[0] in v]
        if not rows:
            continue
        lines += ([""] if lines else []) + [
            "| type | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for iou_type, values in rows:
            cells = [f"{100 * values[m]:.1f}" if values.get(m, -1) >= 0 else "-" for m in names]
            lines.append(f"| {iou_type} | " + " | ".join(cells) + " |")
    for iou_type, values in metrics.items():
        extra += [f"{iou_type} {name}: {100 * v:.1f}" for name, v in values.items()
                  if name not in ALL_METRICS]
    return "\n".join(lines + ([""] + extra if extra else []))
