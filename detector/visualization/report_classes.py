"""The parts of a study's report that go past the summary: the recall
(AR) columns of each variant, and the per-class AP of each variant beside
its baseline's, classes sorted by their gain (for the ROI operator studies:
which classes gain most from ROI Align). Read from the runs' results.json
(``metrics`` and ``per_class``); runs written before these existed have no
such columns, and the tables are then left out."""

from __future__ import annotations

from collections.abc import Sequence

AR_COLUMNS = ("AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
HEADERS = {"segm": "mask", "bbox": "box"}


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def class_values(variant, iou_type: str, metric: str = "AP") -> dict[str, list[float]]:
    """{class name: the metric of each run that has ground truth of the class}, percent."""
    out: dict[str, list[float]] = {}
    for run in variant.runs:
        for row in (run.per_class or {}).get(iou_type, []):
            value = row.get(metric)
            if value is not None and row.get("gt_instances", 1):
                out.setdefault(str(row.get("name", row.get("category_id"))), []).append(
                    100 * value)
    return out


def recall_table(variants: Sequence, cell) -> str:
    """Mean ± std over seeds of the AR columns (mask AR when there are masks,
    else box), with box AR100 beside mask AR; empty without AR in the runs."""
    kind = "segm" if any(v.values("segm", "AR100") for v in variants) else "bbox"
    columns = [(kind, m) for m in AR_COLUMNS] + ([("bbox", "AR100")] if kind == "segm" else [])
    if not any(v.values(t, m) for v in variants for t, m in columns):
        return ""
    from .report import label

    heads = [f"{HEADERS[t]} {m}" for t, m in columns]
    lines = ["Recall (AR, percent; mean ± std over seeds):", "",
             "| variant | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for v in variants:
        lines.append(f"| {label(v.settings)} | "
                     + " | ".join(cell(v.values(t, m)) for t, m in columns) + " |")
    return "\n".join(lines)


def class_table(variants: Sequence, baseline_of) -> str:
    """Per-class AP (mask AP with masks, else box AP; mean over seeds) of every
    variant, and each variant's gain over its baseline (``baseline_of``:
    variant -> its baseline variant or None); classes sorted by the largest
    gain, first; empty when the runs have no per-class rows."""
    kind = "segm" if any(class_values(v, "segm") for v in variants) else "bbox"
    values = {id(v): {c: _mean(x) for c, x in class_values(v, kind).items()} for v in variants}
    classes = sorted({c for per in values.values() for c in per})
    if not classes:
        return ""
    from .report import label

    pairs = [(v, b) for v in variants if (b := baseline_of(v)) is not None]

    def gain(v, b, c) -> float | None:
        mine, theirs = values[id(v)].get(c), values[id(b)].get(c)
        return None if mine is None or theirs is None else mine - theirs

    def best_gain(c) -> float:
        gains = [g for v, b in pairs if (g := gain(v, b, c)) is not None]
        return max(gains) if gains else float("-inf")

    classes.sort(key=lambda c: (-best_gain(c), c))
    heads = [label(v.settings) for v in variants] + [
        f"{label(v.settings)} gain" for v, _ in pairs]
    lines = [f"Per-class {HEADERS[kind]} AP (percent, mean over seeds), classes by their "
             "largest gain over the baseline:", "",
             "| class | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for c in classes:
        cells = ["-" if (x := values[id(v)].get(c)) is None else f"{x:.1f}" for v in variants]
        cells += ["-" if (g := gain(v, b, c)) is None else f"{g:+.1f}" for v, b in pairs]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
