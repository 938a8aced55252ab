"""Figures of a test's results (matplotlib, Agg, each PNG written whole or
not at all): precision-recall curves per class, the confusion matrix and the
error breakdown as bars."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import ERRORS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | os.PathLike) -> Path:
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    figure.savefig(partial, dpi=110, format="png")
    plt.close(figure)
    os.replace(partial, path)
    return path


def plot_pr_curves(curves: Mapping[str, Mapping], names: Mapping[int, str],
                   path: str | os.PathLike) -> Path:
    """One figure: a panel per iou type (rows) and IoU threshold (columns),
    one curve per class with ground truth, labelled with its AP at that IoU
    (the area under COCO's interpolated curve)."""
    plt = _pyplot()
    thresholds = sorted({t for c in curves.values() for t in c["precision"]}, key=float)
    if not curves or not thresholds:
        raise ValueError("no precision-recall curves to draw (no detections?)")
    figure, axes = plt.subplots(len(curves), len(thresholds), squeeze=False,
                                figsize=(5 * len(thresholds), 4 * len(curves)))
    for row, (iou_type, c) in enumerate(curves.items()):
        recall = np.asarray(c["recall"])
        for col, threshold in enumerate(thresholds):
            ax = axes[row, col]
            for category_id, precision in zip(c["category_ids"], c["precision"][threshold]):
                if precision is None:
                    continue
                ap = 100 * float(np.mean(precision))
                ax.plot(recall, precision, linewidth=1.2,
                        label=f"{names.get(category_id, category_id)} ({ap:.1f})")
            ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
                   title=f"{iou_type}, IoU {threshold}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, title="class (AP)", title_fontsize=7, loc="lower left")
    figure.tight_layout()
    return _save(figure, path)


def plot_confusion(confusion: Mapping, path: str | os.PathLike) -> Path:
    """The confusion matrix, each row coloured by its share of the row's
    ground truth (the background row by its share of all unmatched
    detections), with the counts written in."""
    plt = _pyplot()
    matrix = np.asarray(confusion["matrix"], dtype=np.float64)
    names = confusion["classes"]
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 1.0 + 0.55 * len(names)
    figure, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, int(count), ha="center", va="center", fontsize=8,
                    color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted (background: missed)")
    ax.set_ylabel("ground truth (background: matched nothing)")
    ax.set_title(f"confusion at score >= {confusion['score_threshold']:g}, "
                 f"IoU >= {confusion['iou_threshold']:g}", fontsize=9)
    figure.colorbar(image, ax=ax, fraction=0.046, label="share of the row")
    figure.tight_layout()
    return _save(figure, path)


def plot_errors(breakdowns: Mapping[str, Mapping], path: str | os.PathLike) -> Path:
    """Bars: the AP50 points each cause of error costs, per iou type."""
    plt = _pyplot()
    if not breakdowns:
        raise ValueError("no error breakdown to draw")
    figure, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(breakdowns)
    for i, (iou_type, b) in enumerate(breakdowns.items()):
        values = [100 * (b["errors"][c]["dAP"] or 0.0) for c in ERRORS]
        xs = np.arange(len(ERRORS)) + (i - (len(breakdowns) - 1) / 2) * width
        ap = "-" if b["AP50"] is None else f"{100 * b['AP50']:.1f}"
        ax.bar(xs, values, width, label=f"{iou_type} (AP50 {ap})")
    ax.set_xticks(range(len(ERRORS)), ERRORS, fontsize=8)
    ax.set_ylabel("AP50 points gained if fixed")
    ax.set_title("Where the AP goes", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, path)
