"""The confusion matrix on hand-built cases: the ground truth fed back as
detections is diagonal; a swapped class, a missed box, a detection matching
nothing and a duplicate each land in their own cell; the gallery picks the
images with those errors."""

import numpy as np
import pytest
import torch

from detector.evaluation.confusion import confusion_matrix
from detector.evaluation.gallery import draw_gallery, worst_images
from test_per_class import coco_of, result

BOXES = [(1, 1, 10, 10, 60, 60), (1, 2, 100, 20, 50, 80), (2, 3, 30, 30, 40, 40),
         (2, 1, 120, 120, 70, 70), (3, 2, 0, 0, 200, 200)]


def ground_truth():
    return coco_of(3, BOXES, {1: "circle", 2: "square", 3: "star"})


def test_ground_truth_as_detections_is_diagonal():
    gt = ground_truth()
    results = [result(i, c, x, y, w, h, 0.9) for i, c, x, y, w, h in BOXES]
    confusion = confusion_matrix(gt, results)
    expected = np.diag([2, 2, 1, 0])  # two circles, two squares, a star; background 0
    assert np.array_equal(confusion["matrix"], expected)
    assert confusion["classes"] == ["circle", "square", "star", "background"]
    assert all(v["errors"] == 0 for v in confusion["per_image"].values())


def test_swapped_missed_unmatched_and_duplicate_each_in_their_cell():
    """Image 1: the circle detected as a square (row circle, column square);
    the square found. Image 2: the star missed (row star, column background),
    the circle found, and found again by a worse detection (a duplicate: row
    background, column circle). Image 3: the square found, a star detected on
    empty ground (row background, column star), and a circle below the score
    threshold (not counted)."""
    gt = ground_truth()
    results = [result(1, 2, 12, 10, 60, 60, 0.8), result(1, 2, 100, 20, 50, 80, 0.9),
               result(2, 1, 120, 120, 70, 70, 0.9), result(2, 1, 125, 120, 70, 70, 0.6),
               result(3, 2, 0, 0, 200, 200, 0.9), result(3, 3, 5, 5, 20, 20, 0.7),
               result(3, 1, 50, 50, 30, 30, 0.3)]
    confusion = confusion_matrix(gt, results, score_threshold=0.5)
    expected = np.zeros((4, 4), dtype=int)
    expected[0, 1] = 1  # circle taken for a square
    expected[1, 1] = 2  # squares found
    expected[0, 0] = 1  # the circle of image 2
    expected[2, 3] = 1  # the star missed
    expected[3, 0] = 1  # the duplicate circle matched nothing
    expected[3, 2] = 1  # the star on empty ground
    assert np.array_equal(confusion["matrix"], expected), confusion["matrix"]
    assert confusion["per_image"][1] == {"errors": 1, "missed": 0, "wrong_class": 1,
                                         "unmatched": 0}
    assert confusion["per_image"][2]["errors"] == 2
    assert worst_images(confusion, 2) == [2, 1]  # two errors, then one (ties: lower id)


def test_a_right_detection_is_not_stolen_by_a_better_wrong_one():
    """A square detection (0.9) and a circle detection (0.8) on the same
    circle: the circle detection takes it; the square one matches nothing."""
    gt = coco_of(1, [(1, 1, 10, 10, 60, 60)], {1: "circle", 2: "square"})
    results = [result(1, 2, 10, 10, 60, 60, 0.9), result(1, 1, 11, 10, 60, 60, 0.8)]
    matrix = np.asarray(confusion_matrix(gt, results)["matrix"])
    assert matrix[0, 0] == 1 and matrix[2, 1] == 1 and matrix.sum() == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="iou_threshold must be in"):
        confusion_matrix(ground_truth(), [], iou_threshold=0)
    with pytest.raises(ValueError, match="image ids \\[9\\] are not in the ground truth"):
        confusion_matrix(ground_truth(), [], image_ids=[9])


def test_gallery_draws_the_worst_images(tmp_path):
    gt = ground_truth()
    results = [result(1, 2, 12, 10, 60, 60, 0.8)]
    confusion = confusion_matrix(gt, results)
    reads = []

    def read_image(image_id):
        reads.append(image_id)
        return torch.full((3, 200, 200), 128, dtype=torch.uint8)

    path = draw_gallery(gt, results, confusion, read_image, tmp_path / "gallery.png", count=2)
    assert path.is_file() and not list(tmp_path.glob(".*partial"))
    assert reads == [1, 2]  # image 1: 2 errors (wrong class, square missed); image 2: 2 missed


def test_only_a_crowd_region_of_its_own_class_hides_a_detection():
    """As COCOeval: a detection inside a crowd region of its own class is
    ignored; one of another class there is a false positive (background row)."""
    gt = coco_of(1, [(1, 1, 10, 10, 60, 60)], {1: "circle", 2: "square"})
    gt.dataset["annotations"].append({"id": 2, "image_id": 1, "category_id": 2,
                                      "bbox": [100, 100, 80, 80], "area": 6400, "iscrowd": 1})
    gt.createIndex()
    results = [result(1, 1, 10, 10, 60, 60, 0.9),
               result(1, 2, 100, 100, 80, 80, 0.9),  # a square in the squares' crowd: ignored
               result(1, 1, 101, 100, 80, 80, 0.9)]  # a circle there: a false positive
    confusion = confusion_matrix(gt, results)
    matrix = np.asarray(confusion["matrix"])
    assert matrix[0, 0] == 1 and matrix[2, 0] == 1 and matrix.sum() == 2
    assert confusion["per_image"][1]["unmatched"] == 1
