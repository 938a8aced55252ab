"""The learning curves of one run, drawn from its own logs: training and
validation losses, the learning rate and the validation APs against the step.
``rcnn-train`` writes ``curves.png`` into the run directory when it ends;
``rcnn-report --curves RUN_DIR`` draws it again from a finished run."""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from pathlib import Path

Series = dict[str, list[tuple[int, float]]]


def read_metrics(run_dir: str | os.PathLike) -> Series:
    """Every logged value of the run, {name: [(step, value), ...]}, from the
    CSV logger's metrics.csv files under ``run_dir`` (TensorBoard event files
    when there is no CSV log)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    files = sorted(run_dir.rglob("metrics.csv"))
    if files:
        return _read_csv(files)
    events = sorted(run_dir.rglob("events.out.tfevents.*"))
    if events:
        return _read_events(events)
    raise FileNotFoundError(f"{run_dir}: no logs to draw from (no csv/**/metrics.csv and no "
                            "TensorBoard events); the run needs logger=csv or tensorboard")


def _read_csv(files: list[Path]) -> Series:
    series: Series = defaultdict(list)
    for path in files:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                step = row.get("step")
                if step in (None, ""):
                    continue
                for name, value in row.items():
                    if name in ("step", "epoch") or value in (None, ""):
                        continue
                    series[name].append((int(float(step)), float(value)))
    return dict(series)


def _read_events(files: list[Path]) -> Series:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: Series = defaultdict(list)
    for path in files:
        accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            series[tag] += [(event.step, event.value) for event in accumulator.Scalars(tag)]
    return dict(series)


def _panels(series: Series) -> list[tuple[str, list[str], bool]]:
    """(title, series names, log scale) of each panel that has data."""
    names = sorted(series)
    train_terms = [n for n in names if n.startswith("train/loss_")]
    val_terms = [n for n in names if n.startswith("val/loss_")]
    panels = [
        ("loss", [n for n in ("train/loss", "val/loss") if n in series], True),
        ("loss terms", train_terms + val_terms, True),
        ("learning rate", [n for n in names if n.startswith("lr-")], True),
        ("validation AP", [n for n in names if n.startswith("val/")
                           and n.endswith(("_AP", "_AP50", "_AP75"))], False),
    ]
    return [(title, shown, log_scale) for title, shown, log_scale in panels if shown]


def plot_curves(run_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Draws the run's curves into ``output`` (default RUN_DIR/curves.png),
    written whole or not at all; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_metrics(run_dir)
    panels = _panels(series)
    if not panels:
        raise ValueError(f"{run_dir}: its logs hold no losses, learning rates or APs")
    output = Path(output) if output is not None else Path(run_dir) / "curves.png"
    figure, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), sharex=True,
                                squeeze=False)
    for ax, (title, shown, log_scale) in zip(axes[:, 0], panels):
        for name in shown:
            # -1: COCOeval's "no ground truth in this range"
            points = sorted(p for p in series[name] if math.isfinite(p[1])
                            and not (title == "validation AP" and p[1] < 0))
            if not points:
                continue
            steps, values = zip(*points)
            validation = name.startswith("val/")
            ax.plot(steps, values, marker="o" if validation else None, markersize=3,
                    linewidth=1.5 if name in ("train/loss", "val/loss") else 1,
                    label=name)
        if log_scale and all(v > 0 for n in shown for _, v in series[n] if math.isfinite(v)):
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("step")
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    figure.savefig(partial, dpi=110, format="png")
    plt.close(figure)
    os.replace(partial, output)
    return output
