"""rcnn-report on a study whose runs have per-class rows and AR: the AR
columns and the per-class mask AP of each variant with its gain over ROI
Pooling, classes by their gain; against numbers computed by hand."""

import json
from pathlib import Path

from detector.visualization.report import find_runs, group, markdown, report


def write_run(folder: Path, roi_op: str, seed: int, classes: dict, ar100: float) -> None:
    """A results.json like train.py's with per_class rows: ``classes`` maps a
    name to its mask AP (None: no ground truth in the split)."""
    run = folder / f"roi_op={roi_op},seed={seed}"
    run.mkdir(parents=True)
    ar = {"AR1": ar100 / 2, "AR10": ar100, "AR100": ar100, "ARs": -1.0, "ARm": 0.5, "ARl": 0.6}
    metrics = {t: {"AP": 0.3, "AP50": 0.5, "AP75": 0.25, "APs": 0.1, "APm": 0.2, "APl": -1.0,
                   **ar} for t in ("segm", "bbox")}
    rows = [{"category_id": i, "name": name, "gt_instances": 0 if ap is None else 5, "AP": ap}
            for i, (name, ap) in enumerate(classes.items(), start=1)]
    (run / "results.json").write_text(json.dumps({
        "metrics": metrics, "per_class": {"segm": rows, "bbox": rows}, "seed": seed,
        "overrides": [f"roi_op={roi_op}", f"seed={seed}"]}))


def study(tmp_path):
    # circle: pool 20, 40 -> 30.0; align 50, 50 -> 50.0: +20.0
    # square: pool 60, 60 -> 60.0; align 60, 70 -> 65.0: +5.0
    # star: no ground truth anywhere: not a row
    for seed, (pool, align) in enumerate([((0.2, 0.6), (0.5, 0.6)), ((0.4, 0.6), (0.5, 0.7))]):
        write_run(tmp_path, "pool", seed, {"square": pool[1], "circle": pool[0], "star": None},
                  0.3 + 0.2 * seed)
        write_run(tmp_path, "align", seed, {"square": align[1], "circle": align[0],
                                            "star": None}, 0.5)
    return tmp_path


def test_per_class_gains_and_recall(tmp_path):
    text = markdown(group(find_runs([study(tmp_path)])))
    per_class = text.split("Per-class mask AP")[1]
    lines = [line for line in per_class.splitlines() if line.startswith("| ")]
    assert lines[0] == ("| class | RoIPool (max) | RoIAlign (avg, aligned=True) | "
                        "RoIAlign (avg, aligned=True) gain |")
    assert lines[1] == "| circle | 30.0 | 50.0 | +20.0 |"
    assert lines[2] == "| square | 60.0 | 65.0 | +5.0 |"
    assert "star" not in per_class
    recall = text.split("Recall (AR")[1].split("Per-class")[0]
    # pool AR100 30, 50 -> 40.0 ± 14.1; AR1 half of it; ARs -1: '-'
    assert "| RoIPool (max) | 20.0 ± 7.1 | 40.0 ± 14.1 | 40.0 ± 14.1 | - | 50.0 ± 0.0 |" \
        in recall


def test_runs_without_per_class_rows_have_no_such_tables(tmp_path):
    run = tmp_path / "roi_op=pool,seed=0"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({
        "metrics": {"segm": {"AP": 0.3}}, "seed": 0, "overrides": ["roi_op=pool", "seed=0"]}))
    text = report([tmp_path])
    assert "Per-class" not in text and "Recall" not in text
