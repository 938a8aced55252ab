"""The error breakdown on hand-built cases, one per cause, with the AP50
each costs computed by hand; fixing every error gives AP50 1; the AP50 it
starts from is pycocotools' own on a noisy validation set."""

import contextlib
import io

import pytest
from pycocotools.coco import COCO

from detector.evaluation import evaluate
from detector.evaluation.coco import segm_ground_truth
from detector.evaluation.errors import ERRORS, average_precision, error_breakdown
from test_per_class import coco_of, result

HALF = 51 / 101  # COCO's AP of one class with recall 1/2 at precision 1 (51 of 101 points)


def scene():
    """One 200x200 image: 'a' instances G1 at (0, 0, 100, 100) and G2 at
    (120, 120, 60, 60), a 'b' instance G3 at (150, 0, 40, 40). G2 and G3 are
    found exactly (scores 0.5 and 0.3), G1 is not: AP50 of 'a' is 51/101,
    of 'b' 1."""
    gt = coco_of(1, [(1, 1, 0, 0, 100, 100), (1, 1, 120, 120, 60, 60), (1, 2, 150, 0, 40, 40)],
                 {1: "a", 2: "b"})
    return gt, [result(1, 1, 120, 120, 60, 60, 0.5), result(1, 2, 150, 0, 40, 40, 0.3)]


# (cause, extra detections, AP50 before, AP50 after fixing that cause)
CASES = [
    # a 'b' detection exactly on G1, first: 'b' has precision 1/2 at its recall 1
    ("classification", [result(1, 2, 0, 0, 100, 100, 0.9)], (HALF + 0.5) / 2, 1.0),
    # an 'a' detection on 40% of G1 (IoU 0.4), first: 'a' has precision 1/2 at recall 1/2
    ("localisation", [result(1, 1, 0, 0, 100, 40, 0.9)], (HALF / 2 + 1) / 2, 1.0),
    # a 'b' detection on 40% of G1: removed, 'b' is perfect again; G1 stays missed
    ("both", [result(1, 2, 0, 0, 100, 40, 0.9)], (HALF + 0.5) / 2, (HALF + 1) / 2),
    # an 'a' detection on G2 shifted 10 px (IoU 0.71) scored above the exact one takes G2,
    # which makes the exact one a duplicate; G1 found last: precision 1, 1/2, 2/3
    ("duplicate", [result(1, 1, 130, 120, 60, 60, 0.9), result(1, 1, 0, 0, 100, 100, 0.2)],
     ((51 + 50 * 2 / 3) / 101 + 1) / 2, 1.0),
    # a 'b' detection far from everything, first
    ("background", [result(1, 2, 20, 150, 30, 30, 0.9)], (HALF + 0.5) / 2, (HALF + 1) / 2),
    # nothing more: G1 missed; without it 'a' is perfect
    ("missed", [], (HALF + 1) / 2, 1.0),
]


@pytest.mark.parametrize("cause, extra, before, after", CASES, ids=[c[0] for c in CASES])
def test_each_cause_costs_what_fixing_it_gains(cause, extra, before, after):
    gt, results = scene()
    breakdown = error_breakdown(gt, results + extra)
    assert breakdown["AP50"] == pytest.approx(before, abs=1e-9)
    assert breakdown["errors"][cause]["count"] == 1
    assert breakdown["errors"][cause]["dAP"] == pytest.approx(after - before, abs=1e-9)
    for other in ERRORS:
        if other != cause and other != "missed":
            assert breakdown["errors"][other]["count"] == 0, other
    # G1 is missed unless a classification or localisation error points at it
    # (or, for duplicates, the last detection finds it)
    missed = 0 if cause in ("classification", "localisation", "duplicate") else 1
    assert breakdown["errors"]["missed"]["count"] == missed
    assert breakdown["AP50_all_fixed"] == pytest.approx(1.0)
    # COCO's AP50 of the same detections: the breakdown starts from it
    assert evaluate(gt, results + extra, ("bbox",), backend="pycocotools")["bbox"][
        "AP50"] == pytest.approx(before, abs=1e-9)


def test_an_error_on_an_instance_already_found_is_removed_not_counted_twice():
    """Two 'b' detections on G1 (classification errors): fixing gives G1 to the
    better one; the other is removed, so 'a' is perfect."""
    gt, results = scene()
    extra = [result(1, 2, 0, 0, 100, 100, 0.9), result(1, 2, 2, 0, 100, 100, 0.8)]
    breakdown = error_breakdown(gt, results + extra)
    assert breakdown["errors"]["classification"]["count"] == 2
    assert breakdown["AP50"] + breakdown["errors"]["classification"]["dAP"] == pytest.approx(1.0)


def test_average_precision_by_hand():
    assert average_precision([0.9, 0.8], [True, True], 2) == pytest.approx(1.0)
    assert average_precision([0.9], [True], 2) == pytest.approx(HALF)
    assert average_precision([0.9, 0.8], [False, True], 1) == pytest.approx(0.5)
    assert average_precision([], [], 3) == 0.0


def test_bad_thresholds():
    gt, results = scene()
    with pytest.raises(ValueError, match="0 < bg < fg <= 1, got bg=0.6, fg=0.5"):
        error_breakdown(gt, results, bg=0.6)
    with pytest.raises(ValueError, match="result 0 has category_id 9"):
        error_breakdown(gt, [result(1, 9, 0, 0, 10, 10)])


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_starts_from_cocos_ap50_and_fixing_all_gives_one(tmp_path, iou_type):
    """On the synthetic validation images with imperfect detections (jittered
    boxes, shifted masks, misses, false positives): the breakdown's AP50 is
    pycocotools' AP50, fixing everything gives 1, and fixing a cause never
    lowers the AP."""
    from detector.data.builders.synthetic import make_synthetic_coco
    from test_evaluation import noisy_results

    _, annotations = make_synthetic_coco(tmp_path, "val", num_images=12, image_size=(96, 128),
                                         seed=5)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(annotations))
    results = noisy_results(coco)
    gt = segm_ground_truth(coco) if iou_type == "segm" else coco
    breakdown = error_breakdown(gt, results, iou_type)
    reference = evaluate(coco, results, (iou_type,), backend="pycocotools")[iou_type]["AP50"]
    assert breakdown["AP50"] == pytest.approx(reference, abs=1e-9)
    assert breakdown["AP50_all_fixed"] == pytest.approx(1.0)
    assert breakdown["errors"]["missed"]["count"] > 0
    assert all(e["dAP"] >= -1e-12 for e in breakdown["errors"].values())
