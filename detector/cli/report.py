"""rcnn-report: the table and chart of a study's runs (see detector.visualization.report), or
with --curves a run's learning curves (see detector.visualization.curves). Reads results.json
files and logs only: compiles nothing, trains nothing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..visualization import report as report_module
from ..visualization.curves import plot_curves
from ..visualization.report import report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rcnn-report", description=report_module.__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", metavar="DIR",
                        help="folders holding the runs' results.json (searched recursively); "
                        "with --curves, run directories")
    parser.add_argument("--curves", action="store_true", help="instead of the table: draw "
                        "each run directory's learning curves (losses, learning rate, "
                        "validation APs) from its logs into DIR/curves.png")
    parser.add_argument("-o", "--output", help="where report.md and report.png go "
                        "(default: the first DIR); the runs' results.json are copied "
                        "to OUTPUT/runs/, from which the report can be made again")
    parser.add_argument("--baseline", default="roi_op=pool",
                        help="KEY=VALUE of the runs each variant is compared with "
                        "(default: roi_op=pool; '' for none)")
    parser.add_argument("--title", help="the chart's and report's title (default: the "
                        "runs' experiment, else the first DIR's name)")
    parser.add_argument("--update", metavar="DOC", help="also put the table (and chart) into "
                        "the Markdown file DOC, between '<!-- report: TITLE -->' and "
                        "'<!-- end report -->'")
    args = parser.parse_args(argv)
    if args.curves:
        try:
            for folder in args.folders:
                print(f"learning curves: {plot_curves(folder)}")
        except (FileNotFoundError, ValueError) as error:
            parser.exit(2, f"error: {error}\n")
        return 0
    try:
        text = report(args.folders, args.output, args.baseline or None, args.title,
                      args.update)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
