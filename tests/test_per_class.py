"""Per-class AP / AR and the overall AR, on hand-built ground truth and
detections with hand-computed answers, by both backends; the per-class APs
averaged over the classes with ground truth equal COCO's overall AP; the rows
agree with pycocotools' own accumulated arrays."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detector.evaluation import BACKENDS, evaluate, evaluate_per_class, format_per_class
from detector.evaluation.coco import segm_ground_truth
from detector.evaluation.per_class import CLASS_METRICS


def coco_of(images: int, annotations: list[tuple], categories: dict[int, str]) -> COCO:
    """COCO ground truth from (image_id, category_id, x, y, w, h) boxes on
    200x200 images."""
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "height": 200, "width": 200, "file_name": f"{i}.png"}
                   for i in range(1, images + 1)],
        "annotations": [{"id": n, "image_id": i, "category_id": c, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0}
                        for n, (i, c, x, y, w, h) in enumerate(annotations, start=1)],
        "categories": [{"id": c, "name": name} for c, name in categories.items()]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def result(image_id, category_id, x, y, w, h, score=0.9):
    return {"image_id": image_id, "category_id": category_id, "bbox": [x, y, w, h],
            "score": score}


def three_classes():
    """'a': two 100x100 boxes, both found exactly (AP 1, AR 1). 'b': two, one
    found shifted 10 px (IoU 100*90 / (100*110) = 0.818: a match at the 7
    thresholds 0.50 ... 0.80), one missed: at those thresholds precision 1 up
    to recall 1/2 (51 of COCO's 101 recall points), so AP = 0.7 * 51/101,
    AP50 = AP75 = 51/101, AR100 = 0.7 * 1/2. 'c': no ground truth, one false
    positive: null, not 0."""
    gt = coco_of(2, [(1, 1, 10, 10, 100, 100), (2, 1, 50, 50, 100, 100),
                     (1, 2, 90, 90, 100, 100), (2, 2, 0, 90, 100, 100)],
                 {1: "a", 2: "b", 3: "c"})
    results = [result(1, 1, 10, 10, 100, 100), result(2, 1, 50, 50, 100, 100),
               result(1, 2, 100, 90, 100, 100, 0.8), result(2, 3, 20, 20, 50, 50, 0.7)]
    return gt, results


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_per_class_ap_and_recall(backend):
    gt, results = three_classes()
    metrics, per_class, _ = evaluate_per_class(gt, results, ("bbox",), backend=backend)
    a, b, c = per_class["bbox"]
    assert (a["name"], a["gt_instances"], b["gt_instances"]) == ("a", 2, 2)
    for name in ("AP", "AP50", "AP75", "APl", "AR100"):
        assert a[name] == pytest.approx(1.0), name
    assert a["APs"] is None and a["APm"] is None  # no small or medium 'a'
    assert b["AP"] == pytest.approx(0.7 * 51 / 101, abs=1e-6)
    assert b["AP50"] == pytest.approx(51 / 101, abs=1e-6)
    assert b["AP75"] == pytest.approx(51 / 101, abs=1e-6)
    assert b["AR100"] == pytest.approx(0.35, abs=1e-6)
    assert c == {"category_id": 3, "name": "c", "gt_instances": 0,
                 **dict.fromkeys(CLASS_METRICS)}
    # COCO's overall numbers are the means over the classes with ground truth
    assert metrics["bbox"]["AP"] == pytest.approx((1 + 0.7 * 51 / 101) / 2, abs=1e-6)
    assert metrics["bbox"]["AR100"] == pytest.approx((1 + 0.35) / 2, abs=1e-6)
    # AR1: one detection per image; image 1 has an 'a' and a 'b', each the
    # best of its own class, so AR1 = AR100 here
    assert metrics["bbox"]["AR1"] == pytest.approx(metrics["bbox"]["AR100"], abs=1e-6)
    assert metrics["bbox"]["ARs"] == -1.0  # no small ground truth
    table = format_per_class(per_class)
    assert table.index("| a |") < table.index("| b |") < table.index("| c | no ground truth")


@pytest.mark.parametrize("backend", BACKENDS)
def test_recall_at_one_and_ten_detections(backend):
    """Three 'a' boxes in one image, each found, scores 0.9, 0.8, 0.7: AR1
    finds the best one (1/3), AR10 all three."""
    gt = coco_of(1, [(1, 1, 0, 0, 50, 50), (1, 1, 60, 0, 50, 50), (1, 1, 0, 60, 50, 50)],
                 {1: "a"})
    results = [result(1, 1, 0, 0, 50, 50, 0.9), result(1, 1, 60, 0, 50, 50, 0.8),
               result(1, 1, 0, 60, 50, 50, 0.7)]
    bbox = evaluate(gt, results, ("bbox",), backend=backend)["bbox"]
    assert bbox["AR1"] == pytest.approx(1 / 3, abs=1e-6)
    assert bbox["AR10"] == pytest.approx(1.0) and bbox["AR100"] == pytest.approx(1.0)
    assert bbox["ARm"] == pytest.approx(1.0) and bbox["ARl"] == -1.0


def test_no_detections_lists_every_class():
    gt, _ = three_classes()
    metrics, per_class, _ = evaluate_per_class(gt, [], ("bbox",))
    assert metrics["bbox"]["AR100"] == 0.0
    assert [r["AP"] for r in per_class["bbox"]] == [0.0, 0.0, None]


def _pycocotools_rows(coco, results, iou_type):
    """Per-class AP, AP50 and AR100 straight from pycocotools' arrays."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco, coco.loadRes([dict(r, bbox=list(r["bbox"])) for r in results]),
                             iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
    precision, recall = evaluator.eval["precision"], evaluator.eval["recall"]
    rows = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        p, r = precision[:, :, k, 0, -1], recall[:, k, 0, -1]
        rows[category_id] = (p[p > -1].mean() if (p > -1).any() else None,
                             p[0][p[0] > -1].mean() if (p[0] > -1).any() else None,
                             r[r > -1].mean() if (r > -1).any() else None)
    return rows


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_means_are_the_overall_ap_on_a_validation_set(tmp_path, backend):
    """On the synthetic validation images (six classes) with imperfect
    detections: the mean of the per-class APs over the classes with ground
    truth is COCO's AP (and likewise AR100), for boxes and masks; each row
    agrees with pycocotools' precision and recall arrays."""
    from detector.data.builders.synthetic import make_synthetic_coco
    from test_evaluation import noisy_results

    _, annotations = make_synthetic_coco(tmp_path, "val", num_images=12, image_size=(96, 128),
                                         seed=5)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(annotations))
    results = noisy_results(coco)
    metrics, per_class, _ = evaluate_per_class(coco, results, backend=backend)
    for iou_type in ("bbox", "segm"):
        rows = per_class[iou_type]
        scored = [r for r in rows if r["gt_instances"]]
        assert len(scored) >= 3
        assert np.mean([r["AP"] for r in scored]) == pytest.approx(metrics[iou_type]["AP"],
                                                                    abs=1e-9)
        assert np.mean([r["AR100"] for r in scored]) == pytest.approx(
            metrics[iou_type]["AR100"], abs=1e-9)
        reference = _pycocotools_rows(coco, results, iou_type)
        for row in rows:
            ap, ap50, ar = reference[row["category_id"]]
            for ours, theirs in ((row["AP"], ap), (row["AP50"], ap50), (row["AR100"], ar)):
                assert (ours is None) == (theirs is None)
                if ours is not None:
                    assert ours == pytest.approx(theirs, abs=1e-4), (iou_type, row)


def test_pascal_voc_ap50_per_class():
    """VOC07's 11-point AP50 on each bbox row: 'a' found twice (1), 'b' one of
    two (precision 1 up to recall 1/2: 6 of the 11 points), 'c' none (null)."""
    gt, results = three_classes()
    metrics, per_class, _ = evaluate_per_class(gt, results, ("bbox",), extra=("voc07_ap50",))
    a, b, c = per_class["bbox"]
    assert a["AP50_voc07"] == pytest.approx(1.0)
    assert b["AP50_voc07"] == pytest.approx(6 / 11)
    assert c["AP50_voc07"] is None
    assert metrics["bbox"]["AP50_voc07"] == pytest.approx((1 + 6 / 11) / 2)
    assert "AP50_voc07" in format_per_class(per_class).splitlines()[1]


@pytest.mark.slow
def test_agrees_with_pycocotools_on_a_trained_models_test(learned, tmp_path):
    """The small Mask R-CNN that has learned the shapes (conftest.learned),
    tested on 12 synthetic images: every per-class row the module computed
    agrees with pycocotools' arrays on the same detections, and the test
    finds something (a case with something to get wrong)."""
    import pytorch_lightning as pl

    from conftest import LEARNED_IMAGE_SIZE
    from detector.training import DetectionModule, SyntheticDataModule

    module = DetectionModule.load_from_checkpoint(learned, map_location="cpu")
    data = SyntheticDataModule(str(tmp_path / "data"), num_train=2, num_val=2, num_test=12,
                               image_size=LEARNED_IMAGE_SIZE, object_size="medium", batch_size=4)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         default_root_dir=tmp_path)
    trainer.test(module, data)
    tested = module.tested
    coco = tested["dataset"].coco
    assert tested["evaluation"].metrics["bbox"]["AP50"] > 0.3
    for iou_type in ("bbox", "segm"):
        gt = coco if iou_type == "bbox" else segm_ground_truth(coco)
        reference = _pycocotools_rows(gt, tested["results"], iou_type)
        for row in tested["evaluation"].per_class[iou_type]:
            ap, ap50, ar = reference[row["category_id"]]
            for ours, theirs in ((row["AP"], ap), (row["AP50"], ap50), (row["AR100"], ar)):
                assert (ours is None) == (theirs is None)
                if ours is not None:
                    assert ours == pytest.approx(theirs, abs=1e-4), (iou_type, row)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_ignore_flag_counts_as_coco_eval_counts_it(backend):
    """COCOeval sets ``ignore`` from ``iscrowd``: an annotation marked
    ignore=1 but not crowd is ground truth for both, so its class has a row
    (AP 0 here, nothing found) and the mean of the rows is the overall AP."""
    gt = coco_of(1, [(1, 1, 10, 10, 60, 60), (1, 2, 100, 100, 60, 60)], {1: "a", 2: "b"})
    gt.dataset["annotations"][0]["ignore"] = 1
    gt.createIndex()
    evaluation = evaluate_per_class(gt, [result(1, 2, 100, 100, 60, 60)], ("bbox",),
                                    backend=backend)
    metrics = evaluation.metrics
    by_name = {r["name"]: r for r in evaluation.per_class["bbox"]}
    assert by_name["a"]["gt_instances"] == 1 and by_name["a"]["AP"] == 0
    assert metrics["bbox"]["AP"] == pytest.approx((by_name["a"]["AP"] + by_name["b"]["AP"]) / 2)
