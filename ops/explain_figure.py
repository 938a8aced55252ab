"""The figure of rcnn-explain: each operator's bins (and sample
points) on the feature grid around the box, one panel per operator.

Drawn in feature coordinates u = x / stride, where cell c is the square
[c, c + 1) (see ops.explain): roi_pool's bins are the whole cells they read,
a bilinear sample at coordinate v is drawn at v + 0.5, the centre of the cell
whose value it reads when v is an integer.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Sequence

from .explain import BilinearAxis, Case, Operator, PoolAxis, signed

MARGIN = 2  # cells shown around the box and the regions read
MAX_GRID_LINES = 80  # per axis; beyond, a line every few cells
MAX_SAMPLES = 4000  # per panel; beyond, only bin (0, 0)'s samples are drawn
BOX_COLOR, BIN_COLOR, SAMPLE_COLOR = "#d62728", "#1f77b4", "#ff7f0e"
POOL_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b")  # by (row, column) parity


def window(case: Case, ops: Sequence[Operator]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (x, y) ranges of cells shown: box and regions read, plus a margin,
    each at least half as long as the other, at most one cell beyond the map."""
    height, width = case.map_size

    def span(axes, size):
        reads = [a.read() for a in axes if a.read() is not None]
        lo = min([a.lo for a in axes] + [r[0] for r in reads])
        hi = max([a.hi for a in axes] + [r[1] for r in reads])
        margin = max(MARGIN, math.ceil(0.05 * (hi - lo)))
        return max(math.floor(lo) - margin, -1), min(math.ceil(hi) + margin, size + 1)

    xs, ys = span([op.x for op in ops], width), span([op.y for op in ops], height)
    return _widen(xs, ys, width), _widen(ys, xs, height)


def _widen(span: tuple[int, int], other: tuple[int, int], size: int) -> tuple[int, int]:
    """span grown about its middle to half of other's length, within [-1, size + 1]."""
    target = min(math.ceil((other[1] - other[0]) / 2), size + 2)
    missing = target - (span[1] - span[0])
    if missing <= 0:
        return span
    lo = max(span[0] - missing // 2, -1)
    hi = min(lo + target, size + 1)
    return max(hi - target, -1), hi


def nice_step(length: float, count: int) -> int:
    """The least of 1, 2, 5, 10, 20, 50... that cuts length into at most count parts."""
    for power in itertools.count():
        for base in (1, 2, 5):
            if length / (base * 10 ** power) <= count:
                return base * 10 ** power


def _grid(ax, case: Case, xs: tuple[int, int], ys: tuple[int, int]) -> None:
    height, width = case.map_size
    extent = max(xs[1] - xs[0], ys[1] - ys[0])
    step, label_step = nice_step(extent, MAX_GRID_LINES), nice_step(extent, 14)
    for u in range(xs[0], xs[1] + 1):
        if u % step == 0:
            ax.axvline(u, color="0.8", lw=0.5, zorder=0)
    for v in range(ys[0], ys[1] + 1):
        if v % step == 0:
            ax.axhline(v, color="0.8", lw=0.5, zorder=0)
    # Outside the feature map: shaded.
    ax.add_patch(_rect(xs[0], ys[0], xs[1], ys[1], fill=True, color="0.85", lw=0, zorder=-2))
    ax.add_patch(_rect(0, 0, width, height, fill=True, color="white", lw=0, zorder=-1))
    ax.add_patch(_rect(0, 0, width, height, fill=False, color="0.3", lw=1.2, zorder=1))
    ax.set_xlim(xs)
    ax.set_ylim(ys[1], ys[0])  # image rows go down
    ax.set_aspect("equal")
    ax.set_xticks([c + 0.5 for c in range(xs[0], xs[1]) if c % label_step == 0])
    ax.set_xticklabels([str(c) for c in range(xs[0], xs[1]) if c % label_step == 0])
    ax.set_yticks([c + 0.5 for c in range(ys[0], ys[1]) if c % label_step == 0])
    ax.set_yticklabels([str(c) for c in range(ys[0], ys[1]) if c % label_step == 0])
    ax.tick_params(labelsize=7, length=2)
    ax.set_xlabel(f"cell column (1 cell = {case.stride} px)", fontsize=8)
    ax.set_ylabel("cell row", fontsize=8)


def _rect(x0, y0, x1, y1, **style):
    from matplotlib.patches import Rectangle
    return Rectangle((x0, y0), x1 - x0, y1 - y0, **style)


def _pool_bins(ax, x: PoolAxis, y: PoolAxis) -> None:
    """Each bin's cell range, filled lightly: where bins overlap the fill darkens."""
    for row, (y0, y1) in enumerate(y.cells):
        for col, (x0, x1) in enumerate(x.cells):
            if x1 > x0 and y1 > y0:
                color = POOL_COLORS[(row % 2) * 2 + col % 2]
                ax.add_patch(_rect(x0, y0, x1, y1, fill=True, color=color, alpha=0.15, lw=0))
                ax.add_patch(_rect(x0 + 0.06, y0 + 0.06, x1 - 0.06, y1 - 0.06, fill=False,
                                   color=color, lw=0.9))


def _bilinear_bins(ax, x: BilinearAxis, y: BilinearAxis) -> bool:
    """Bin edges and sample points; False when only bin (0, 0)'s samples fit."""
    (x0, x1), (y0, y1) = x.read(), y.read()
    for p in range(len(x.samples) + 1):
        ax.plot([x0 + p * x.bin] * 2, [y0, y1], color=BIN_COLOR, lw=0.9, ls="--")
    for p in range(len(y.samples) + 1):
        ax.plot([x0, x1], [y0 + p * y.bin] * 2, color=BIN_COLOR, lw=0.9, ls="--")
    columns = [v + 0.5 for bin_samples in x.samples for v in bin_samples]
    rows = [v + 0.5 for bin_samples in y.samples for v in bin_samples]
    every = len(columns) * len(rows) <= MAX_SAMPLES
    if not every:
        columns, rows = [v + 0.5 for v in x.samples[0]], [v + 0.5 for v in y.samples[0]]
    ax.scatter([c for _ in rows for c in columns], [r for r in rows for _ in columns],
               s=9, color=SAMPLE_COLOR, edgecolors="none", zorder=3)
    return every


def draw(case: Case, ops: Sequence[Operator], path: str | Path) -> None:
    """Writes the figure to path as PNG, atomically (a temporary name, then replaced)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    xs, ys = window(case, ops)
    rows = math.ceil(len(ops) / 2)
    aspect = min(max((ys[1] - ys[0]) / (xs[1] - xs[0]), 0.5), 2.0)
    fig, axes = plt.subplots(rows, 2, figsize=(11, 0.6 + rows * (5.0 * aspect + 1.3)),
                             squeeze=False)
    for ax, op in zip(axes.flat, ops):
        _grid(ax, case, xs, ys)
        note = ""
        if op.is_pool:  # not isinstance: under -m, ops.explain is loaded twice
            _pool_bins(ax, op.x, op.y)
        elif not _bilinear_bins(ax, op.x, op.y):
            note = "; samples of bin (0, 0) only"
        ax.add_patch(_rect(op.x.lo, op.y.lo, op.x.hi, op.y.hi, fill=False, color=BOX_COLOR,
                           lw=2, zorder=4))
        errors = op.misalignment()
        edges = "reads no cell" if errors is None else "misalignment (px): " + ", ".join(
            f"{edge} {signed(cells * case.stride)}" for edge, cells in errors.items())
        ax.set_title(f"{op.name}\n{edges}{note}", fontsize=9)
    for ax in axes.flat[len(ops):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=BOX_COLOR, lw=2, label="box"),
               Line2D([], [], color=POOL_COLORS[0], lw=6, alpha=0.4,
                      label="roi_pool bins: cells read (darker where bins overlap)"),
               Line2D([], [], color=BIN_COLOR, lw=1, ls="--", label="bilinear bins"),
               Line2D([], [], color=SAMPLE_COLOR, ls="", marker="o", ms=3,
                      label="sample points (at the cell centre when on a cell)")]
    height, width = case.image_size
    fig.suptitle(f"box ({', '.join(f'{v:g}' for v in case.box)}) px on a {height} x {width} "
                 f"image, stride {case.stride}, output {case.output} x {case.output}, "
                 f"sampling ratio {case.sampling_ratio}", fontsize=10)
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 0.98), h_pad=2.0)
    path = Path(path)
    partial = path.with_name(path.name + ".partial.png")
    fig.savefig(partial, dpi=100)
    plt.close(fig)
    partial.replace(path)
