"""What a test writes besides the metrics: the detections file (whole or not
at all, read back by pycocotools), the files of write_outputs with a figure
that cannot be drawn (a warning, the rest written), and a tiny run of the
real ``rcnn-train`` command whose folder holds every file results.json names."""

import contextlib
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detector.evaluation import ALL_METRICS, CLASS_METRICS, evaluate_per_class
from detector.evaluation.detections import write_detections
from test_per_class import coco_of, result

BIN = Path(sys.executable).parent


def test_detections_file_is_read_by_pycocotools(tmp_path):
    gt = coco_of(2, [(1, 1, 10, 10, 60, 60), (2, 1, 20, 20, 50, 50)], {1: "circle"})
    results = [result(1, 1, 10, 10, 60, 60), result(2, 1, 20, 20, 50, 50, 0.4)]
    path = write_detections(tmp_path, "test", results)
    assert path.name == "detections_test.json" and not list(tmp_path.glob("*.partial"))
    with contextlib.redirect_stdout(io.StringIO()):
        loaded = gt.loadRes(str(path))
    assert sorted(a["score"] for a in loaded.dataset["annotations"]) == [0.4, 0.9]
    with pytest.raises(ValueError, match="split must be a plain name.*'../x'"):
        write_detections(tmp_path, "../x", results)


def test_a_figure_that_fails_is_a_warning(tmp_path, monkeypatch, caplog):
    from detector.evaluation import figures
    from detector.evaluation.outputs import report_text, write_outputs

    def broken(*args, **kwargs):
        raise RuntimeError("no display")

    monkeypatch.setattr(figures, "plot_pr_curves", broken)
    gt = coco_of(1, [(1, 1, 10, 10, 60, 60), (1, 2, 100, 100, 50, 50)], {1: "a", 2: "b"})
    results = [result(1, 2, 10, 10, 60, 60)]
    evaluation = evaluate_per_class(gt, results, ("bbox",))
    with caplog.at_level(logging.WARNING):
        sections = write_outputs(tmp_path, "val", gt, evaluation, results, None)
    assert "could not draw pr_curves: RuntimeError: no display" in caplog.text
    assert "pr_curves" not in sections["files"]
    for name in ("detections_val.json", "confusion_val.json", "confusion_val.png",
                 "errors_val.png"):
        assert (tmp_path / name).is_file(), name
    assert sections["errors"]["bbox"]["errors"]["classification"]["count"] == 1
    assert "| a | 1 |" in report_text(sections)


def _pycocotools_per_class(coco: COCO, detections: Path, iou_type: str) -> dict:
    """{category id: (AP, AR100)} straight from pycocotools' arrays."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco, coco.loadRes(str(detections)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
    out = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        p = evaluator.eval["precision"][:, :, k, 0, -1]
        r = evaluator.eval["recall"][:, k, 0, -1]
        out[category_id] = (p[p > -1].mean() if (p > -1).any() else None,
                            r[r > -1].mean() if (r > -1).any() else None)
    return out


def test_rcnn_train_writes_every_result(tmp_path):
    """A few steps of the real command on tiny synthetic data (about 20 s):
    results.json has AR and per_class (agreeing with pycocotools' arrays
    computed here from the detections file), the errors and every file."""
    run = tmp_path / "run"
    done = subprocess.run(
        [str(BIN / "rcnn-train"), f"paths.output_dir={run}", f"hydra.run.dir={run}",
         f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'logs'}",
         "data.num_train=4", "data.num_val=2", "data.num_test=4", "data.image_size=[96,128]",
         "model.transform.min_size=96", "model.transform.max_size=128", "data.batch_size=2",
         "trainer.max_epochs=1", "~callbacks.progress", "module.warmup_steps=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert set(results["metrics"]["segm"]) == set(ALL_METRICS)
    assert "bbox per class:" in done.stdout and "Errors (count" in done.stdout
    for name in results["files"].values():
        assert (run / name).is_file(), name
    assert set(results["files"]) == {"detections", "confusion", "confusion_png", "pr_curves",
                                     "errors", "gallery"}
    (annotations,) = (tmp_path / "data").glob("synthetic-test-*/annotations.json")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(annotations))
    for iou_type in ("bbox", "segm"):
        rows = results["per_class"][iou_type]
        assert {r["category_id"] for r in rows} == set(coco.cats)
        reference = _pycocotools_per_class(coco, run / "detections_test.json", iou_type)
        for row in rows:
            assert set(CLASS_METRICS) <= set(row)
            ap, ar = reference[row["category_id"]]
            assert (row["AP"] is None) == (ap is None) == (row["gt_instances"] == 0)
            if ap is not None:
                assert row["AP"] == pytest.approx(ap, abs=1e-4)
                assert row["AR100"] == pytest.approx(ar, abs=1e-4)
        assert set(results["errors"][iou_type]["errors"]) == {
            "classification", "localisation", "both", "duplicate", "background", "missed"}
    confusion = json.loads((run / "confusion_test.json").read_text())
    assert len(confusion["matrix"]) == len(coco.cats) + 1
    # the overall AR is logged; per-class scalars only when asked
    assert {"test/bbox_AR100", "test/segm_AR1"} <= _logged(run)
    assert not [name for name in _logged(run) if name.startswith("test/bbox_AP/")]


def _logged(run: Path) -> set[str]:
    (log,) = run.rglob("metrics.csv")
    return set(log.read_text().splitlines()[0].split(","))


def test_per_class_logging_when_asked(tmp_path):
    from detector.training import train
    from test_train_entry import _cfg

    train(_cfg(tmp_path, "test=false", "callbacks.pictures=null", "data.num_train=2",
               "data.num_val=2", "evaluation.per_class_logging=true"))
    logged = _logged(tmp_path / "run")
    names = {name.split("/")[-1] for name in logged if name.startswith("val/segm_AP/")}
    assert names and names <= {"circle", "rectangle", "triangle", "ellipse", "star", "ring"}
    assert {f"val/bbox_AR100/{n}" for n in names} <= logged
    assert {"val/bbox_AR100", "val/segm_AR10", "val/segm_AP"} <= logged
