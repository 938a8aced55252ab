"""Tabulate a study's runs (the command: ``rcnn-report DIR...``).

Reads every ``results.json`` under the given folders (the runs of
``rcnn-train -m experiment=STUDY``), groups the runs by what their
command-line overrides set apart from the seed, and writes

- a Markdown table in the Mask R-CNN paper's layout: mask AP / AP50 / AP75,
  box AP / AP50 / AP75 and APs / APm / APl, each as mean ± standard deviation
  over the seeds, with each variant's difference to its baseline (by default
  the ROI Pooling run that agrees on every other setting); with the same seeds
  on both sides the difference is paired, seed by seed;
- the recall (AR) of each variant, and the per-class AP of each variant with
  its gain over its baseline, classes by their gain (detector.visualization.report_classes);
- a bar chart (PNG) of the AP means and standard deviations.

Both go into ``--output`` (default: the first folder) as ``report.md`` and
``report.png``; the table is also printed. With ``--output`` elsewhere, the
runs' ``results.json`` are copied under ``OUTPUT/runs/`` as well, so the table
can be made again from the output folder alone (``rcnn-report
OUTPUT/runs``) after the training folders are gone.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from .report_classes import class_table, recall_table

IGNORED_KEYS = ("seed", "experiment")  # what tells seeds of one variant apart
COLUMNS = (("segm", "AP"), ("segm", "AP50"), ("segm", "AP75"),
           ("bbox", "AP"), ("bbox", "AP50"), ("bbox", "AP75"))
SIZE_COLUMNS = ("APs", "APm", "APl")
HEADERS = {"segm": "mask", "bbox": "box"}
ROI_OP_NAMES = {
    "pool": "RoIPool (max)", "warp_max": "RoIWarp (max)", "warp_avg": "RoIWarp (avg)",
    "align_max": "RoIAlign (max)", "align_avg": "RoIAlign (avg)",
    "align": "RoIAlign (avg, aligned=True)", "align_s1": "RoIAlign (avg, 1 sample/bin)",
    "align_adaptive": "RoIAlign (avg, adaptive samples)",
}


@dataclass
class Run:
    path: Path
    settings: dict[str, str]  # override key -> value, without the ignored keys
    seed: int | None
    metrics: dict[str, dict[str, float]]
    wall_time_s: float | None = None
    experiment: str | None = None
    overrides: list[str] = field(default_factory=list)  # as given on the command line
    per_class: dict[str, list[dict]] = field(default_factory=dict)  # results.json's


@dataclass
class Variant:
    settings: dict[str, str]
    runs: list[Run] = field(default_factory=list)

    @property
    def seeds(self) -> list:
        return [run.seed for run in self.runs]

    def values(self, iou_type: str, metric: str) -> list[float]:
        """The metric of every run, in percent (runs without it left out)."""
        out = []
        for run in self.runs:
            value = run.metrics.get(iou_type, {}).get(metric)
            if value is not None and value >= 0:
                out.append(100 * value)
        return out


def _parse_overrides(overrides: Sequence[str], source: Path) -> dict[str, str]:
    settings = {}
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if not sep:
            raise ValueError(f"{source}: override {item!r} is not KEY=VALUE")
        settings[key.lstrip("+~")] = value
    return settings


def read_run(path: Path) -> Run:
    """One run's results.json. Its overrides come from the file or, for files
    written before it held them, from Hydra's .hydra/overrides.yaml beside it."""
    try:
        data = json.loads(path.read_text())
        metrics = data["metrics"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a results.json written by train.py ({error})") from None
    overrides = data.get("overrides")
    if overrides is None:
        hydra_file = path.parent / ".hydra" / "overrides.yaml"
        overrides = (yaml.safe_load(hydra_file.read_text()) or []) if hydra_file.is_file() else []
    settings = _parse_overrides(overrides, path)
    seed = data.get("seed", settings.get("seed"))
    seed = int(seed) if seed is not None else None
    experiment = settings.get("experiment")
    for key in IGNORED_KEYS:
        settings.pop(key, None)
    return Run(path, settings, seed, metrics, data.get("wall_time_s"), experiment,
               list(overrides), data.get("per_class") or {})


def find_runs(folders: Sequence[str | Path]) -> list[Run]:
    """Every run below the folders, each once: the same run found twice (a
    copy under a report's runs/ and the original) counts once, but two
    different results for one variant and seed are an error naming both."""
    runs: dict[tuple, Run] = {}
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
        files = sorted(folder.rglob("results.json"))
        if not files:
            raise FileNotFoundError(f"{folder}: no results.json below it (did the runs finish?)")
        for path in files:
            run = read_run(path)
            key = (tuple(sorted(run.settings.items())), run.seed)
            seen = runs.setdefault(key, run)
            if seen is not run and seen.metrics != run.metrics:
                raise ValueError(
                    f"{seen.path} and {path}: two different results for "
                    f"{label(run.settings)}, seed {run.seed}; give the folders of one of them")
    return list(runs.values())


def archive(runs: Sequence[Run], folders: Sequence[str | Path], output: Path) -> None:
    """Copies each run's results.json (with its overrides, so the copy stands
    alone) to output/runs/<its folder's name>/<its path below that folder>/,
    unless the run already lies below ``output``."""
    output = output.resolve()
    roots = [Path(folder).resolve() for folder in folders]
    for run in runs:
        path = run.path.resolve()
        if path.is_relative_to(output):
            continue
        root = next(r for r in roots if path.is_relative_to(r))
        target = output / "runs" / root.name / path.parent.relative_to(root) / "results.json"
        data = dict(json.loads(path.read_text()), overrides=run.overrides)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name("results.json.partial")
        partial.write_text(json.dumps(data, indent=2))
        partial.replace(target)


def group(runs: Sequence[Run]) -> list[Variant]:
    """Runs grouped by the settings that differ between runs (a setting all
    runs share, e.g. trainer=gpu, does not name a variant), in first-seen order
    with ROI Pooling first."""
    keys = sorted({k for run in runs for k in run.settings})
    varying = [k for k in keys if len({run.settings.get(k) for run in runs}) > 1]
    variants: dict[tuple, Variant] = {}
    for run in runs:
        settings = {k: run.settings[k] for k in varying if k in run.settings}
        key = tuple(sorted(settings.items()))
        variants.setdefault(key, Variant(settings)).runs.append(run)
    order = list(variants.values())
    order.sort(key=lambda v: tuple((k, _rank(k, v.settings.get(k))) for k in varying))
    return order


def _rank(key: str, value: str | None) -> tuple:
    if key == "roi_op" and value in ROI_OP_NAMES:
        return (0, list(ROI_OP_NAMES).index(value), "")
    return (1, 0, value or "")


def label(settings: dict[str, str]) -> str:
    parts = []
    for key, value in settings.items():
        if key == "roi_op":
            parts.append(ROI_OP_NAMES.get(value, value))
        elif key == "data.object_size":
            parts.append(f"{value} objects")
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts) or "all runs"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def baseline_of(variant: Variant, variants: Sequence[Variant], baseline: str | None
                ) -> Variant | None:
    """The variant that agrees with ``variant`` except that it has the
    ``baseline`` setting (KEY=VALUE); None where there is none or it is itself."""
    if not baseline:
        return None
    key, _, value = baseline.partition("=")
    wanted = dict(variant.settings, **{key: value})
    for other in variants:
        if other.settings == wanted and other is not variant:
            return other
    return None


def difference(variant: Variant, base: Variant, iou_type: str, metric: str
               ) -> tuple[float, float] | None:
    """variant - base in percent points, paired by seed: mean ± std of the
    per-seed differences over the seeds both have (at least two); else the
    difference of the means (std NaN: not claimed)."""
    pairs = {}
    for side, var in ((0, variant), (1, base)):
        for run in var.runs:
            value = run.metrics.get(iou_type, {}).get(metric)
            if value is not None and value >= 0 and run.seed is not None:
                pairs.setdefault(run.seed, [None, None])[side] = 100 * value
    paired = [a - b for a, b in pairs.values() if a is not None and b is not None]
    if len(paired) >= 2:
        return mean_std(paired)
    mine, theirs = variant.values(iou_type, metric), base.values(iou_type, metric)
    if not mine or not theirs:
        return None
    return mean_std(mine)[0] - mean_std(theirs)[0], float("nan")


def _cell(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean, std = mean_std(values)
    return f"{mean:.1f} ± {std:.1f}" if len(values) > 1 else f"{mean:.1f}"


def _diff_cell(diff: tuple[float, float] | None) -> str:
    if diff is None:
        return "-"
    mean, std = diff
    return f"{mean:+.1f}" if math.isnan(std) else f"{mean:+.1f} ± {std:.1f}"


def markdown(variants: Sequence[Variant], baseline: str | None = "roi_op=pool") -> str:
    """The results table (mean ± std over seeds, percent), then the
    differences to the baseline where there is one."""
    size_type = "segm" if any(v.values("segm", "AP") for v in variants) else "bbox"
    heads = [f"{HEADERS[t]} {m}" for t, m in COLUMNS] + [
        f"{HEADERS[size_type]} {m}" for m in SIZE_COLUMNS]
    columns = list(COLUMNS) + [(size_type, m) for m in SIZE_COLUMNS]
    lines = ["| variant | seeds | " + " | ".join(heads) + " |",
             "|---|---|" + "---|" * len(heads)]
    for v in variants:
        cells = [_cell(v.values(t, m)) for t, m in columns]
        seeds = ",".join(str(s) for s in sorted(v.seeds, key=lambda s: (s is None, s)))
        lines.append(f"| {label(v.settings)} | {seeds} | " + " | ".join(cells) + " |")
    diffs = [(v, b) for v in variants if (b := baseline_of(v, variants, baseline))]
    if diffs:
        lines += ["", f"Difference to the baseline ({baseline}, same other settings), "
                  "percent points, paired by seed (mean ± std of the per-seed differences "
                  "over the seeds both have; without ±: fewer than two seeds in common, "
                  "difference of the means):", "",
                  "| variant | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
        for v, b in diffs:
            cells = [_diff_cell(difference(v, b, t, m)) for t, m in columns]
            lines.append(f"| {label(v.settings)} | " + " | ".join(cells) + " |")
    for extra in (recall_table(variants, _cell),
                  class_table(variants, lambda v: baseline_of(v, variants, baseline))):
        if extra:
            lines += ["", extra]
    times = [r.wall_time_s for v in variants for r in v.runs if r.wall_time_s]
    if times:
        count = sum(len(v.runs) for v in variants)
        untimed = (f"; runs without a whole-run wall time left out: {count - len(times)}"
                   if len(times) < count else "")
        lines += ["", f"{count} runs; wall time per run "
                  f"{min(times) / 60:.1f}-{max(times) / 60:.1f} min, "
                  f"{sum(times) / 3600:.2f} h in all{untimed}."]
    return "\n".join(lines)


def bar_chart(variants: Sequence[Variant], path: Path, title: str) -> None:
    """Grouped bars: one group per metric, one bar per variant, std as error bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [(t, m) for t, m in COLUMNS if any(v.values(t, m) for v in variants)]
    width = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(columns) + 0.4 * len(variants)), 4.0))
    for i, v in enumerate(variants):
        stats = [mean_std(v.values(t, m)) if v.values(t, m) else (0.0, 0.0)
                 for t, m in columns]
        xs = [c + (i - (len(variants) - 1) / 2) * width for c in range(len(columns))]
        ax.bar(xs, [s[0] for s in stats], width, yerr=[s[1] for s in stats], capsize=2,
               label=label(v.settings))
    ax.set_xticks(range(len(columns)), [f"{HEADERS[t]} {m}" for t, m in columns])
    ax.set_ylabel("AP (%), mean ± std over seeds")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    partial = path.with_name(path.name + ".partial.png")
    fig.savefig(partial, dpi=110)
    plt.close(fig)
    partial.replace(path)


def report(folders: Sequence[str | Path], output: str | Path | None = None,
           baseline: str | None = "roi_op=pool", title: str | None = None,
           update: str | Path | None = None) -> str:
    """Writes report.md and report.png into ``output`` (default: the first
    folder) and copies the runs there (see archive), puts the table and chart
    into the document ``update`` (see update_document) if given; returns the
    Markdown."""
    if baseline and "=" not in baseline:
        raise ValueError(f"--baseline {baseline!r}: expected KEY=VALUE, e.g. roi_op=pool")
    runs = find_runs(folders)
    variants = group(runs)
    output = Path(output or folders[0])
    output.mkdir(parents=True, exist_ok=True)
    archive(runs, folders, output)
    experiments = {run.experiment for run in runs}
    if title is None:
        title = experiments.pop() if len(experiments) == 1 and None not in experiments \
            else Path(folders[0]).resolve().name
    text = markdown(variants, baseline)
    chart = output / "report.png"
    bar_chart(variants, chart, title)
    partial = output / "report.md.partial"
    partial.write_text(f"# {title}\n\n{text}\n\n![{title}]({chart.name})\n")
    partial.replace(output / "report.md")
    if update:
        image = os.path.relpath(chart, Path(update).resolve().parent)
        update_document(update, title, text, image)
    return text


def update_document(document: str | Path, name: str, text: str, image: str) -> None:
    """Replaces the block between ``<!-- report: NAME -->`` and ``<!-- end report -->``
    in ``document`` with ``text`` (and the chart), so a document's tables are the
    report's own output, regenerated rather than edited."""
    document = Path(document)
    content = document.read_text()
    begin, end = f"<!-- report: {name} -->", "<!-- end report -->"
    if begin not in content:
        raise ValueError(f"{document}: no '{begin}' marker to put the {name} table under")
    head, rest = content.split(begin, 1)
    if end not in rest:
        raise ValueError(f"{document}: '{begin}' has no '{end}' after it")
    tail = rest.split(end, 1)[1]
    partial = document.with_name(document.name + ".partial")
    partial.write_text(f"{head}{begin}\n{text}\n\n![{name}]({image})\n{end}{tail}")
    partial.replace(document)
