"""Per-class metrics, read from the arrays COCOeval accumulates (no second
pass over the detections): ``eval["precision"]`` [T, R, K, A, M] (IoU
thresholds, recall points, categories, area ranges, detections per image) and
``eval["recall"]`` [T, K, A, M], -1 where a category has no ground truth.

Each category's AP is the mean of its own precision entries, as COCO's
overall AP is the mean over all categories' entries: so the overall AP is the
mean of the per-class APs over the categories with ground truth. A category
without ground truth in the evaluated images has ``gt_instances`` 0 and null
metrics (it can be neither found nor missed), never 0."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

AR_METRICS = ("AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
CLASS_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
_AREAS = ("all", "small", "medium", "large")


def _mean(values: np.ndarray) -> float | None:
    values = values[values > -1]
    return float(values.mean()) if values.size else None


def gt_instances(coco_gt, image_ids: Sequence[int] | None) -> Counter:
    """Ground-truth instances per category id that COCOeval scores: not crowd,
    in the evaluated images (COCOeval sets an annotation's ``ignore`` from its
    ``iscrowd``, whatever the file says, so neither backend skips others)."""
    selected = None if image_ids is None else {int(i) for i in image_ids}
    return Counter(a["category_id"] for a in coco_gt.dataset["annotations"]
                   if not a.get("iscrowd", 0)
                   and (selected is None or a["image_id"] in selected))


def per_class_rows(coco_gt, evaluator, image_ids: Sequence[int] | None) -> list[dict]:
    """One row per category of coco_gt, in category id order: category_id,
    name, gt_instances, and AP, AP50, AP75, APs, APm, APl (at 100 detections
    per image) and AR100, in [0, 1]; null where the category has no ground
    truth (in that size range, for APs / APm / APl). ``evaluator``: a COCOeval
    after accumulate(), or None for no detections at all (every metric 0
    where there is ground truth)."""
    counts = gt_instances(coco_gt, image_ids)
    category_ids = sorted(coco_gt.cats)
    rows = []
    if evaluator is not None:
        params = evaluator.params
        if list(params.catIds) != category_ids:
            raise ValueError(f"per-class metrics: the evaluator's categories {params.catIds} "
                             f"are not the ground truth's {category_ids}")
        precision = np.asarray(evaluator.eval["precision"])
        recall = np.asarray(evaluator.eval["recall"])
        thresholds = np.asarray(params.iouThrs)
        t50, t75 = (int(np.argmin(np.abs(thresholds - t))) for t in (0.5, 0.75))
        m = list(params.maxDets).index(max(params.maxDets))
        area = [list(params.areaRngLbl).index(name) for name in _AREAS]
    for k, category_id in enumerate(category_ids):
        row = {"category_id": int(category_id), "name": coco_gt.cats[category_id].get("name"),
               "gt_instances": int(counts.get(category_id, 0))}
        if row["gt_instances"] == 0:
            row.update(dict.fromkeys(CLASS_METRICS))
        elif evaluator is None:
            row.update(dict.fromkeys(CLASS_METRICS, 0.0))
        else:
            p = precision[:, :, k, :, m]
            row.update({"AP": _mean(p[:, :, area[0]]), "AP50": _mean(p[t50, :, area[0]]),
                        "AP75": _mean(p[t75, :, area[0]]), "APs": _mean(p[:, :, area[1]]),
                        "APm": _mean(p[:, :, area[2]]), "APl": _mean(p[:, :, area[3]]),
                        "AR100": _mean(recall[:, k, area[0], m])})
        rows.append(row)
    return rows


def pr_curves(evaluator, thresholds: Sequence[float] = (0.5, 0.75)) -> dict:
    """{"recall": COCO's recall points, "category_ids", "precision": {IoU
    threshold (str): [per category: interpolated precision at each recall
    point, or None without ground truth]}}, all sizes, 100 detections."""
    params = evaluator.params
    precision = np.asarray(evaluator.eval["precision"])
    m = list(params.maxDets).index(max(params.maxDets))
    curves = {}
    for threshold in thresholds:
        t = int(np.argmin(np.abs(np.asarray(params.iouThrs) - threshold)))
        curves[f"{threshold:g}"] = [None if (p < 0).all() else np.clip(p, 0, None).tolist()
                                    for p in precision[t, :, :, 0, m].T]
    return {"recall": np.asarray(params.recThrs).tolist(),
            "category_ids": [int(c) for c in params.catIds], "precision": curves}


def by_ap(rows: Sequence[Mapping]) -> list[Mapping]:
    """Rows sorted by AP, best first; categories without ground truth last."""
    return sorted(rows, key=lambda r: (r.get("AP") is None, -(r.get("AP") or 0.0),
                                       str(r.get("name"))))


def format_per_class(per_class: Mapping[str, Sequence[Mapping]]) -> str:
    """A Markdown table per iou type, classes sorted by AP, in percent ("-":
    no ground truth; "no ground truth" in the GT column's place when the
    class has none in the split)."""
    blocks = []
    for iou_type, rows in per_class.items():
        names = list(CLASS_METRICS) + (["AP50_voc07"] if any("AP50_voc07" in r for r in rows)
                                       else [])
        lines = [f"{iou_type} per class:", "| class | GT | " + " | ".join(names) + " |",
                 "|---" * (len(names) + 2) + "|"]
        for row in by_ap(rows):
            cells = ["-" if row.get(n) is None else f"{100 * row[n]:.1f}" for n in names]
            count = row["gt_instances"] or "no ground truth"
            lines.append(f"| {row['name']} | {count} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
