"""rcnn-explain: how roi_pool, roi_warp and roi_align place one box on the
feature grid, in numbers and (optionally) a figure. Pure Python: compiles and
runs no kernel."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from ops.explain import Case, num, operators, report


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Case:
    """The arguments as a Case, or parser.error naming the bad one."""
    height, width = args.image_size
    if height < 1 or width < 1:
        parser.error(f"--image-size must be two positive integers (H W), got {height} {width}")
    for name in ("stride", "output"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    x1, y1, x2, y2 = args.box
    if not all(math.isfinite(v) for v in args.box):
        parser.error(f"--box must be finite numbers, got {' '.join(map(num, args.box))}")
    if x2 <= x1:
        parser.error(f"--box x2 must be greater than x1, got x1={num(x1)} x2={num(x2)}")
    if y2 <= y1:
        parser.error(f"--box y2 must be greater than y1, got y1={num(y1)} y2={num(y2)}")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        parser.error(f"--box {' '.join(map(num, args.box))} lies outside the {height} x {width} "
                     f"image: x must be within [0, {width}] and y within [0, {height}]")
    return Case((height, width), (x1, y1, x2, y2), args.stride, args.output, args.sampling_ratio)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rcnn-explain",
        description="How roi_pool, roi_warp and roi_align place one box on the feature grid.")
    parser.add_argument("--image-size", type=int, nargs=2, required=True, metavar=("H", "W"),
                        help="image height and width in pixels")
    parser.add_argument("--box", type=float, nargs=4, required=True,
                        metavar=("X1", "Y1", "X2", "Y2"), help="the box in image pixels")
    parser.add_argument("--stride", type=int, required=True,
                        help="image pixels per feature cell (spatial_scale = 1 / stride)")
    parser.add_argument("--output", type=int, required=True, help="pooled size (output x output)")
    parser.add_argument("--sampling-ratio", type=int, default=2,
                        help="samples per bin and axis of the bilinear operators "
                        "(default: 2, the project's; <= 0: adaptive, ceil(bin size))")
    figure = parser.add_mutually_exclusive_group()
    figure.add_argument("--figure", type=Path, default=Path("explain.png"),
                        help="where the PNG goes (default: explain.png)")
    figure.add_argument("--no-figure", action="store_true", help="do not draw the figure")
    args = parser.parse_args(argv)
    case = _check(parser, args)
    ops = operators(case)
    print(report(case, ops))
    if not args.no_figure:
        from ops.explain_figure import draw  # matplotlib, only when drawing
        draw(case, ops, args.figure)
        print(f"\nfigure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
