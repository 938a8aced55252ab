"""The built-in synthetic dataset: deterministic, cached, valid COCO with exact visible masks."""

import json
import re
import time

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from detector.data import SYNTHETIC_CATEGORIES, make_synthetic_coco

# pycocotools' decode under numpy 2, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SMALL = dict(num_images=6, image_size=(96, 128), max_objects=5)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return make_synthetic_coco(tmp_path_factory.mktemp("mixed"), split="val", num_images=12,
                               seed=3)


def _files(images_dir, annotations):
    return annotations.read_bytes(), {p.name: p.read_bytes() for p in images_dir.iterdir()}


def _masks(coco, image_id):
    anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
    return anns, [mask_utils.decode(a["segmentation"]).astype(bool) for a in anns]


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    first = _files(*make_synthetic_coco(tmp_path / "a", seed=7, **SMALL))
    second = _files(*make_synthetic_coco(tmp_path / "b", seed=7, **SMALL))
    other = _files(*make_synthetic_coco(tmp_path / "c", seed=8, **SMALL))
    assert first == second
    assert len(first[1]) == SMALL["num_images"]
    assert other[0] != first[0]
    assert all(other[1][name] != first[1][name] for name in first[1])


def test_splits_differ_and_names_follow_the_arguments(tmp_path):
    train = make_synthetic_coco(tmp_path, split="train", **SMALL)
    val = make_synthetic_coco(tmp_path, split="val", **SMALL)
    more = make_synthetic_coco(tmp_path, split="val", **{**SMALL, "max_objects": 2})
    assert len({train[1].parent, val[1].parent, more[1].parent}) == 3
    assert train[1].read_bytes() != val[1].read_bytes()
    assert sorted(p.name for p in train[0].iterdir())[0] == "000001.png"


def test_cached_folder_is_reused(tmp_path):
    images_dir, annotations = make_synthetic_coco(tmp_path, **SMALL)
    stamps = {p: p.stat().st_mtime_ns for p in [annotations, *images_dir.iterdir()]}
    start = time.perf_counter()
    again = make_synthetic_coco(tmp_path, **SMALL)
    assert time.perf_counter() - start < 0.05
    assert again == (images_dir, annotations)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert [p.name for p in tmp_path.iterdir()] == [annotations.parent.name]  # no temp left


def test_incomplete_folder_is_rewritten(tmp_path):
    images_dir, annotations = make_synthetic_coco(tmp_path, **SMALL)
    expected = annotations.read_bytes()
    annotations.unlink()
    assert make_synthetic_coco(tmp_path, **SMALL) == (images_dir, annotations)
    assert annotations.read_bytes() == expected


def test_coco_json_is_valid_with_exact_boxes_and_areas(mixed):
    images_dir, annotations = mixed
    coco = COCO(str(annotations))
    assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] == \
        list(enumerate(SYNTHETIC_CATEGORIES, start=1))
    assert {"circle", "rectangle", "triangle", "ellipse", "star"} <= set(SYNTHETIC_CATEGORIES)
    assert len(coco.getImgIds()) == 12 and len(coco.getAnnIds()) >= 12
    used = set()
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        with Image.open(images_dir / info["file_name"]) as image:
            assert image.format == "PNG" and image.mode == "RGB"
            assert image.size == (info["width"], info["height"]) == (320, 256)
        anns, masks = _masks(coco, image_id)
        for ann, mask in zip(anns, masks):
            ys, xs = np.nonzero(mask)
            x, y = xs.min(), ys.min()
            assert ann["bbox"] == [x, y, xs.max() - x + 1, ys.max() - y + 1]
            assert ann["area"] == mask.sum() > 0
            assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
            used.add(ann["category_id"])
        if masks:
            assert np.sum(masks, axis=0).max() == 1, f"visible masks overlap in image {image_id}"
    assert used == set(range(1, len(SYNTHETIC_CATEGORIES) + 1))
    ids = [a["id"] for a in json.loads(annotations.read_text())["annotations"]]
    assert min(ids) >= 1 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("object_size, low, high, image_size", [
    ("small", 0, 32**2, (96, 128)),
    ("medium", 32**2, 96**2, (128, 160)),
    ("large", 96**2, np.inf, (256, 320)),
])
def test_object_size_follows_coco_ranges(tmp_path, object_size, low, high, image_size):
    _, annotations = make_synthetic_coco(tmp_path, num_images=4, image_size=image_size,
                                         object_size=object_size)
    areas = [a["area"] for a in json.loads(annotations.read_text())["annotations"]]
    assert len(areas) >= 4
    assert all(low < area < high for area in areas), areas


def test_mixed_covers_every_range(mixed):
    areas = np.array([a["area"] for a in json.loads(mixed[1].read_text())["annotations"]])
    assert (areas < 32**2).any() and ((areas > 32**2) & (areas < 96**2)).any()
    assert (areas > 96**2).any()


def test_images_are_textured_and_noisy(mixed):
    images_dir, annotations = mixed
    coco = COCO(str(annotations))
    for image_id in coco.getImgIds():
        image = np.asarray(Image.open(images_dir / coco.loadImgs(image_id)[0]["file_name"]))
        _, masks = _masks(coco, image_id)
        background = ~np.any(masks, axis=0) if masks else np.ones(image.shape[:2], bool)
        assert image[background].std(axis=0).max() > 8  # gradient and pattern, not flat
        steps = np.abs(np.diff(image.astype(int), axis=1))[background[:, 1:] & background[:, :-1]]
        assert steps.mean() > 1.5  # per-pixel noise


def test_mask_pixels_share_one_colour(tmp_path):
    # An object is painted in one mildly shaded colour on exactly its mask's pixels.
    images_dir, annotations = make_synthetic_coco(tmp_path, **SMALL, object_size="small")
    coco = COCO(str(annotations))
    for image_id in coco.getImgIds():
        image = np.asarray(Image.open(images_dir / coco.loadImgs(image_id)[0]["file_name"]))
        for mask in _masks(coco, image_id)[1]:
            inside = image[mask].astype(float)
            assert np.abs(inside - np.median(inside, axis=0)).mean() < 20


@pytest.mark.parametrize("kwargs, named", [
    (dict(object_size="huge"), "'huge'"),
    (dict(num_images=0), "0"),
    (dict(num_images=2.5), "2.5"),
    (dict(image_size=(16, 64)), "(16, 64)"),
    (dict(image_size=(64,)), "(64,)"),
    (dict(max_objects=-1), "-1"),
    (dict(seed=-3), "-3"),
    (dict(split="../up"), "'../up'"),
    (dict(object_size="large", image_size=(128, 128)), "(128, 128)"),
])
def test_bad_arguments_name_the_value(tmp_path, kwargs, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        make_synthetic_coco(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())
