"""What roi_pool, roi_warp and roi_align do to one box (the command:
``rcnn-explain``, detector/cli/explain.py; this module needs torch alone).

    rcnn-explain --image-size 800 800 --box 0 0 665 665 --stride 32 --output 7

Prints, for each operator, every step at which it quantizes (or does not),
the bins and sample points it uses and how far the region it reads lies from
the box; draws the same on the feature grid (``explain.png``). The numbers
are those of this project's kernels (``ops/csrc/roi_geometry.h``), redone in
plain Python with the kernels' float32 arithmetic, so they hold to the bit
for float32 features.

Where things lie, for the misalignment figures: image pixel p spans
[p, p + 1); feature cell c spans pixels [c * stride, (c + 1) * stride), that
is [c, c + 1) in feature coordinates u = x / stride. roi_pool reads whole
cells. The bilinear operators read cell c's value at sample coordinate c,
where its centre lies at u = c + 0.5: roi_align(aligned=True) shifts boxes
by that half cell, roi_align(aligned=False) and roi_warp do not, so what they
read lies half a cell right of and below the box.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Sequence

_FLOAT32 = struct.Struct("f")


def f32(v: float) -> float:
    """v rounded to float32. One +, -, *, / of float32 values done in float64
    and rounded gives the float32 result bit for bit."""
    return _FLOAT32.unpack(_FLOAT32.pack(v))[0]


def round_half_away(v: float) -> int:
    """C's round(): halves away from zero (Python's round() goes to even)."""
    whole = math.trunc(v)
    return whole + (int(math.copysign(1, v)) if abs(v - whole) >= 0.5 else 0)


@dataclass(frozen=True)
class Case:
    """One box on one image: the command's arguments."""
    image_size: tuple[int, int]  # (height, width) in pixels
    box: tuple[float, float, float, float]  # (x1, y1, x2, y2) in pixels
    stride: int
    output: int
    sampling_ratio: int = 2

    @property
    def scale(self) -> float:
        """spatial_scale as the kernels hold it (float32)."""
        return f32(1.0 / self.stride)

    @property
    def map_size(self) -> tuple[int, int]:
        """(height, width) of the feature map: a stride-s backbone with padding
        gives ceil(size / s) cells."""
        return tuple(math.ceil(s / self.stride) for s in self.image_size)


@dataclass(frozen=True)
class PoolAxis:
    """roi_pool along one axis (make_pool_box, pool_bin_range), in cells."""
    lo: float  # the box's edges on the feature map: x * spatial_scale
    hi: float
    start: int  # round(lo): the first cell
    end: int  # round(hi): the last cell, included
    size: int  # max(end - start + 1, 1) cells
    bin: float  # size / output cells
    cells: tuple[tuple[int, int], ...]  # bin p reads cells [begin, end), clipped to the map

    def read(self) -> tuple[int, int] | None:
        """Cells [first, end) that some bin reads; None when every bin lies
        off the map (roi_pool then gives 0)."""
        ranges = [r for r in self.cells if r[1] > r[0]]
        if not ranges:
            return None
        return min(r[0] for r in ranges), max(r[1] for r in ranges)

    def ideal(self) -> list[tuple[float, float]]:
        """The bins of the box with nothing rounded: equal parts of [lo, hi]."""
        n, width = len(self.cells), self.hi - self.lo
        return [(self.lo + p * width / n, self.lo + (p + 1) * width / n) for p in range(n)]

    def shared(self) -> list[int]:
        """Cells that bins p and p + 1 both read (negative: cells neither reads)."""
        return [a[1] - b[0] for a, b in zip(self.cells, self.cells[1:])]


def pool_axis(lo_px: float, hi_px: float, scale: float, output: int, size: int) -> PoolAxis:
    """roi_pool's geometry along one axis of a map `size` cells long."""
    lo, hi = f32(f32(lo_px) * scale), f32(f32(hi_px) * scale)
    start, end = round_half_away(lo), round_half_away(hi)
    cells_in_box = max(end - start + 1, 1)
    bin_size = f32(cells_in_box / output)

    def clip(v: int) -> int:
        return min(max(v + start, 0), size)

    ranges = tuple((clip(math.floor(f32(p * bin_size))), clip(math.ceil(f32((p + 1) * bin_size))))
                   for p in range(output))
    return PoolAxis(lo, hi, start, end, cells_in_box, bin_size, ranges)


@dataclass(frozen=True)
class BilinearAxis:
    """roi_warp or roi_align along one axis (make_bilinear_box, sample_coord),
    in the kernels' sample coordinates, where cell c's value lies at c."""
    lo: float  # the box's edges on the feature map: x * spatial_scale
    hi: float
    corners: tuple[float, float]  # lo and hi, rounded to cells by roi_warp
    offset: float  # subtracted from both corners: 0.5 with aligned=True
    start: float  # corners[0] - offset
    size: float  # (corners[1] - offset) - start, at least 1 unless aligned
    bin: float  # size / output
    grid: int  # samples per bin: sampling_ratio, or ceil(bin) when <= 0
    samples: tuple[tuple[float, ...], ...]  # bin p: start + p * bin + (i + 0.5) * bin / grid

    @property
    def half_cell(self) -> float:
        """How far right/below of the box a sample reads when nothing is rounded."""
        return 0.5 - self.offset

    def read(self) -> tuple[float, float]:
        """Where the bins lie, in feature coordinates (sample coordinate + 0.5)."""
        return self.start + 0.5, self.start + self.size + 0.5


def bilinear_axis(lo_px: float, hi_px: float, scale: float, output: int,
                  sampling_ratio: int, rounded: bool, aligned: bool) -> BilinearAxis:
    """roi_warp's (rounded) or roi_align's geometry along one axis."""
    lo, hi = f32(f32(lo_px) * scale), f32(f32(hi_px) * scale)
    corners = (float(round_half_away(lo)), float(round_half_away(hi))) if rounded else (lo, hi)
    offset = 0.5 if aligned else 0.0
    start = f32(corners[0] - offset)
    size = f32(f32(corners[1] - offset) - start)
    if not aligned:
        size = max(size, 1.0)
    bin_size = f32(size / output)
    grid = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_size)

    def sample(p: int, i: int) -> float:  # sample_coord, operation by operation
        return f32(f32(start + f32(p * bin_size)) + f32(f32((i + 0.5) * bin_size) / grid))

    samples = tuple(tuple(sample(p, i) for i in range(grid)) for p in range(output))
    return BilinearAxis(lo, hi, corners, offset, start, size, bin_size, grid, samples)


@dataclass(frozen=True)
class Operator:
    """One operator's geometry for a case, per axis."""
    name: str
    summary: str
    x: PoolAxis | BilinearAxis
    y: PoolAxis | BilinearAxis

    @property
    def is_pool(self) -> bool:
        """roi_pool (whole cells) rather than a bilinear operator."""
        return isinstance(self.x, PoolAxis)

    def misalignment(self) -> dict[str, float] | None:
        """Read region minus box, per edge, in cells (+: right of / below the
        box); None when the operator reads nothing."""
        if self.x.read() is None or self.y.read() is None:
            return None
        (x1, x2), (y1, y2) = self.x.read(), self.y.read()
        return {"x1": x1 - self.x.lo, "y1": y1 - self.y.lo,
                "x2": x2 - self.x.hi, "y2": y2 - self.y.hi}


def operators(case: Case) -> list[Operator]:
    """roi_pool, roi_warp, roi_align(aligned=False) and roi_align(aligned=True)."""
    (height, width), (x1, y1, x2, y2), n = case.map_size, case.box, case.output

    def bilinear(rounded: bool, aligned: bool) -> tuple[BilinearAxis, BilinearAxis]:
        return (bilinear_axis(x1, x2, case.scale, n, case.sampling_ratio, rounded, aligned),
                bilinear_axis(y1, y2, case.scale, n, case.sampling_ratio, rounded, aligned))

    return [
        Operator("roi_pool", "corners rounded, bins with floor/ceil edges, max over whole cells",
                 pool_axis(x1, x2, case.scale, n, width), pool_axis(y1, y2, case.scale, n, height)),
        Operator("roi_warp", "corners rounded, then bilinear samples in continuous bins",
                 *bilinear(rounded=True, aligned=False)),
        Operator("roi_align(aligned=False)", "the Mask R-CNN paper's: nothing rounded",
                 *bilinear(rounded=False, aligned=False)),
        Operator("roi_align(aligned=True)", "nothing rounded, box shifted by half a cell",
                 *bilinear(rounded=False, aligned=True)),
    ]


def num(v: float) -> str:
    """At most 6 decimals, trailing zeros dropped: 20.78125, 3.142857, 22."""
    text = f"{v:.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def signed(v: float) -> str:
    text = num(v)
    return text if text == "0" or text.startswith("-") else "+" + text


def in_cells(v: float) -> str:
    return f"{num(v)} cell" + ("" if num(v) == "1" else "s")


def _values(vs: Sequence[float]) -> str:
    """All of vs, or the first two and the last when there are more than four."""
    shown = [num(v) for v in vs]
    return ", ".join(shown if len(shown) <= 4 else shown[:2] + ["...", shown[-1]])


def _edges(errors: dict[str, float], stride: int) -> str:
    return ", ".join(f"{edge} {signed(v)} cells ({signed(v * stride)} px)"
                     for edge, v in errors.items())


def _describe_pool(axis: PoolAxis, output: int) -> list[str]:
    ranges = " ".join(f"[{a}, {b})" for a, b in axis.cells)
    shared = axis.shared()
    lines = [f"corners round({num(axis.lo)}) = {axis.start}, round({num(axis.hi)}) = {axis.end}",
             f"size max({axis.end} - {axis.start} + 1, 1) = {in_cells(axis.size)}; "
             f"bin {axis.size} / {output} = {in_cells(axis.bin)}",
             f"bin p reads cells [{axis.start} + floor(p * {num(axis.bin)}), "
             f"{axis.start} + ceil((p + 1) * {num(axis.bin)})), clipped to the map:",
             f"  {ranges}"]
    if shared:
        overlaps, gaps = sum(s > 0 for s in shared), sum(s < 0 for s in shared)
        lines.append(f"neighbouring bins share cells at {overlaps} of {len(shared)} boundaries"
                     + (f", leave cells out at {gaps}" if gaps else ""))
    return lines


def _describe_bilinear(axis: BilinearAxis, output: int, rounded: bool) -> list[str]:
    lo, hi = axis.corners
    if rounded:
        first = f"corners round({num(axis.lo)}) = {num(lo)}, round({num(axis.hi)}) = {num(hi)}"
    else:
        first = f"corners {num(lo)}, {num(hi)}: nothing rounded"
    if axis.offset:
        first += (f"; minus half a cell: {num(axis.start)}, {num(hi - axis.offset)}")
    forced = "" if axis.offset else ", at least 1"
    shown = range(output) if output <= 2 else (0, output - 1)
    samples = "; ".join(f"bin {p}: {_values(axis.samples[p])}" for p in shown)
    return [first,
            f"size {in_cells(axis.size)} (end - start{forced}); "
            f"bin {num(axis.size)} / {output} = {in_cells(axis.bin)}",
            f"{axis.grid} samples per bin at {num(axis.start)} + p * {num(axis.bin)} "
            f"+ (i + 0.5) * {num(axis.bin)} / {axis.grid}: {samples}"]


def _axis_lines(describe, op: Operator) -> list[str]:
    x_lines, y_lines = describe(op.x), describe(op.y)
    lines = [f"  x: {x_lines[0]}"] + [f"     {line}" for line in x_lines[1:]]
    if y_lines == x_lines:
        return lines + ["  y: as x"]
    return lines + [f"  y: {y_lines[0]}"] + [f"     {line}" for line in y_lines[1:]]


def _worst_bin(op: Operator) -> tuple[float, str]:
    """How far the roi_pool bin edge farthest from its ideal bin's edge lies, and which."""
    edges = []
    for name, axis in (("x", op.x), ("y", op.y)):
        for p, ((b, e), (ib, ie)) in enumerate(zip(axis.cells, axis.ideal())):
            if e > b:  # a bin wholly off the map reads nothing
                edges += [(abs(b - ib), f"bin {p}'s start along {name}: {b} vs {num(ib)}"),
                          (abs(e - ie), f"bin {p}'s end along {name}: {e} vs {num(ie)}")]
    return max(edges, key=lambda edge: edge[0])  # the first of equals


def _seed_note(op: Operator, output: int) -> str:
    axis = op.x
    floored = math.floor(axis.hi - axis.lo)
    kept = math.floor(floored / output)
    return (f"  note: the seed text floors the box ({in_cells(axis.hi - axis.lo)} to "
            f"{floored}) and the bin ({floored} / {output} = {floored / output:.2f} to {kept}), "
            f"reading {output} x {kept} = {in_cells(output * kept)}; "
            f"this roi_pool (torchvision's) rounds the corners, counts the end cell "
            f"({in_cells(axis.size)}) and keeps bin {num(axis.bin)} with floor/ceil edges, "
            "as above")


def report(case: Case, ops: Sequence[Operator] | None = None) -> str:
    """The explanation printed by the command."""
    ops = operators(case) if ops is None else ops
    (height, width), (x1, y1, x2, y2), s = case.map_size, case.box, case.stride
    first = ops[0]
    lines = [
        f"image {case.image_size[0]} x {case.image_size[1]} px (H x W), stride {s}: feature map "
        f"{height} x {width} cells (ceil(size / {s})); output {case.output} x {case.output}; "
        f"float32, as the kernels compute",
        f"box x {num(x1)} .. {num(x2)}, y {num(y1)} .. {num(y2)} px -> "
        f"x {num(first.x.lo)} .. {num(first.x.hi)}, y {num(first.y.lo)} .. {num(first.y.hi)} cells "
        f"(px * 1/{s}; {num(x2)} / {s} = {num(first.x.hi)})",
        f"misalignment: edge of what an operator reads minus edge of the box (+: right/down); "
        f"pixel p spans [p, p+1), cell c spans pixels [{s}c, {s}c+{s}) with its centre at "
        f"{s}c+{s / 2:g}",
    ]
    for op in ops:
        describe = _report_pool if op.is_pool else _report_bilinear
        lines += ["", f"{op.name}: {op.summary}"] + describe(op, case)
    return "\n".join(lines)


def _report_pool(op: Operator, case: Case) -> list[str]:
    s, errors = case.stride, op.misalignment()
    lines = _axis_lines(lambda a: _describe_pool(a, case.output), op)
    if errors is None:
        return lines + ["  reads no cell: every bin lies off the map, so roi_pool gives 0",
                        _seed_note(op, case.output)]
    (x1, x2), (y1, y2) = op.x.read(), op.y.read()
    worst, where = _worst_bin(op)
    return lines + [
        f"  reads cells x [{x1}, {x2}), y [{y1}, {y2}) = pixels "
        f"x [{x1 * s}, {x2 * s}), y [{y1 * s}, {y2 * s})",
        f"  misalignment: {_edges(errors, s)}",
        f"  worst bin edge: {in_cells(worst)} ({num(worst * s)} px), {where}",
        _seed_note(op, case.output)]


def _report_bilinear(op: Operator, case: Case) -> list[str]:
    s, errors, half = case.stride, op.misalignment(), op.x.half_cell
    rounded = op.name == "roi_warp"
    lines = _axis_lines(lambda a: _describe_bilinear(a, case.output, rounded), op)
    lines.append(f"  misalignment: {_edges(errors, s)}")
    if half:
        rest = {edge: v - half for edge, v in errors.items()}
        lines += [f"    without the half cell (rounding, 1-cell minimum): {_edges(rest, s)}",
                  f"    and {in_cells(half)} ({num(half * s)} px) everywhere: a sample at "
                  f"coordinate v reads around pixel {s}v+{s / 2:g}, not {s}v"]
    for name, axis, size in (("x", op.x, case.map_size[1]), ("y", op.y, case.map_size[0])):
        coords = [v for bin_samples in axis.samples for v in bin_samples]
        beyond = sum(not 0 <= v <= size - 1 for v in coords)
        if beyond:
            lines.append(f"  {name}: {beyond} of {len(coords)} sample coordinates lie past the "
                         f"centre of the map's edge cell: they read that cell alone, or 0 when "
                         f"more than a cell off the map")
    return lines
