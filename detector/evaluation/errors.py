"""Where the AP goes: each false positive and each missed instance given one
cause, and the AP50 each cause costs, measured by fixing its errors alone
(the breakdown TIDE introduced; Bolya et al., 2020).

Detections are first matched as COCO matches them at IoU 0.5 (``fg``), class
by class. Every unmatched detection then gets the first of these causes that
applies, from its overlaps with the image's ground truth:

- duplicate: its own class's instance at IoU >= fg, already taken by a
  better-scored detection;
- classification: another class's instance at IoU >= fg;
- localisation: its own class's instance at bg <= IoU < fg (``bg`` = 0.1);
- both: another class's instance at bg <= IoU < fg;
- background: nothing at IoU >= bg.

An instance left unmatched that no classification or localisation error
points at is *missed*. Fixing an error: a classification or localisation
error becomes a true positive of the instance it points at (given the right
class or box) unless that instance is already found, in which case it is
removed, as are duplicates, "both" and background errors; a missed instance
leaves the ground truth. ``dAP`` is the AP50 after fixing one cause minus the
AP50 as it is; fixing every cause leaves only true positives: AP50 = 1.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO

from .matching import IGNORED, UNMATCHED, images, match_class

ERRORS = ("classification", "localisation", "both", "duplicate", "background", "missed")
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's


def average_precision(scores: Sequence[float], true: Sequence[bool], positives: int) -> float:
    """COCO's interpolated AP of one class: detections (``scores``, whether
    each is a true positive) against ``positives`` instances; the precision
    made non-increasing, read at 101 recall points (0 past the last recall)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    tp = np.asarray(true, dtype=np.float64)[order]
    tps, fps = np.cumsum(tp), np.cumsum(1 - tp)
    recall = tps / positives
    precision = np.maximum.accumulate((tps / np.maximum(tps + fps, np.spacing(1)))[::-1])[::-1]
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    return float(np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)],
                          0.0).mean()) if len(tp) else 0.0


def _mean_ap(entries: Mapping[int, list], positives: Mapping[int, int]) -> float | None:
    """Mean over the classes with ground truth of average_precision;
    ``entries``: class → [(score, true positive)]."""
    aps = [average_precision([s for s, _ in entries.get(c, [])],
                             [t for _, t in entries.get(c, [])], n)
           for c, n in sorted(positives.items()) if n > 0]
    return float(np.mean(aps)) if aps else None


def classify(coco_gt: COCO, results: Sequence[dict], iou_type: str = "bbox",
             image_ids: Sequence[int] | None = None, fg: float = 0.5, bg: float = 0.1,
             max_detections: int = 100) -> dict:
    """The matched detections: {"detections": [(score, class, status, target)]
    with status "tp" or an error name and target (class, image, instance
    index) or None, "missed": {(image, index): class}, "unmatched": every
    (image, index) no detection found, "positives": instances per class}.
    Detections in crowd regions are left out, as COCO ignores them."""
    if not 0 < bg < fg <= 1:
        raise ValueError(f"the IoU thresholds must satisfy 0 < bg < fg <= 1, got bg={bg}, fg={fg}")
    detections, targets, positives = [], set(), defaultdict(int)
    unmatched = {}
    for image in images(coco_gt, results, iou_type, image_ids, max_detections=max_detections):
        classes, crowd = image.gt_classes, image.crowd
        for c in classes[~crowd]:
            positives[int(c)] += 1
        status = {}
        for c in {d["category_id"] for d in image.detections}:
            status.update(match_class(image, c, fg))
        found = {g for g in status.values() if g >= 0}
        for g in np.flatnonzero(~crowd):
            if int(g) not in found:
                unmatched[(image.image_id, int(g))] = int(classes[g])
        for d, det in enumerate(image.detections):
            c, score, g = det["category_id"], float(det["score"]), status[d]
            if g == IGNORED:
                continue
            if g != UNMATCHED:
                detections.append((score, c, "tp", None))
                continue
            row = np.where(crowd, 0.0, image.iou[d])
            same, other = row * (classes == c), row * (classes != c)
            if same.size and same.max() >= fg:
                cause, target = "duplicate", None
            elif other.size and other.max() >= fg:
                cause, target = "classification", int(np.argmax(other))
            elif same.size and same.max() >= bg:
                cause, target = "localisation", int(np.argmax(same))
            elif other.size and other.max() >= bg:
                cause, target = "both", None
            else:
                cause, target = "background", None
            if target is not None:
                target = (int(classes[target]), image.image_id, target)
                targets.add(target[1:])
            detections.append((score, c, cause, target))
    missed = {key: c for key, c in unmatched.items() if key not in targets}
    return {"detections": detections, "missed": missed, "positives": dict(positives),
            "unmatched": set(unmatched)}


def _fixed_ap(matched: dict, fix: set[str]) -> float | None:
    """AP50 with the errors of the causes in ``fix`` fixed."""
    entries, taken = defaultdict(list), set()
    for score, c, cause, target in sorted(matched["detections"], key=lambda e: -e[0]):
        if cause == "tp" or cause not in fix:
            entries[c].append((score, cause == "tp"))
        elif target is not None and target[1:] in matched["unmatched"] and target not in taken:
            taken.add(target)
            entries[target[0]].append((score, True))  # the right class, the right box
    positives = dict(matched["positives"])
    if "missed" in fix:
        for c in matched["missed"].values():
            positives[c] -= 1
    return _mean_ap(entries, positives)


def error_breakdown(coco_gt: COCO, results: Sequence[dict], iou_type: str = "bbox",
                    image_ids: Sequence[int] | None = None, fg: float = 0.5,
                    bg: float = 0.1) -> dict:
    """{"AP50", "AP50_all_fixed", "fg_iou", "bg_iou", "errors": {cause:
    {"count", "dAP"}}}, AP in [0, 1] (null without ground truth). See the
    module's docstring; ``coco_gt`` is the ground truth of ``iou_type`` (for
    segm, with box-only instances as crowd regions)."""
    matched = classify(coco_gt, results, iou_type, image_ids, fg, bg)
    base = _fixed_ap(matched, set())
    counts = defaultdict(int)
    for _, _, cause, _ in matched["detections"]:
        counts[cause] += 1
    counts["missed"] = len(matched["missed"])
    errors = {}
    for cause in ERRORS:
        fixed = _fixed_ap(matched, {cause})
        delta = None if base is None or fixed is None else fixed - base
        errors[cause] = {"count": int(counts[cause]), "dAP": delta}
    return {"AP50": base, "AP50_all_fixed": _fixed_ap(matched, set(ERRORS)), "fg_iou": fg,
            "bg_iou": bg, "errors": errors}


def format_errors(breakdowns: Mapping[str, Mapping]) -> str:
    """A Markdown table: per iou type, each cause's count and the AP50 points
    that fixing it would add."""
    lines = ["| type | AP50 | " + " | ".join(ERRORS) + " |", "|---" * (len(ERRORS) + 2) + "|"]
    for iou_type, b in breakdowns.items():
        cells = [f"{e['count']} (+{100 * e['dAP']:.1f})" if e["dAP"] is not None
                 else f"{e['count']}" for e in (b["errors"][c] for c in ERRORS)]
        ap = "-" if b["AP50"] is None else f"{100 * b['AP50']:.1f}"
        lines.append(f"| {iou_type} | {ap} | " + " | ".join(cells) + " |")
    return ("Errors (count, and AP50 points gained if fixed):\n" + "\n".join(lines))
