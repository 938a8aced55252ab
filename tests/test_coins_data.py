"""The coins dataset: a faithful segmentation of skimage's photo, written as valid, deterministic
COCO whose train and val splits share no coin."""

import contextlib
import importlib
import io
import json
import sys

import numpy as np
import pytest

pytest.importorskip("skimage")

from PIL import Image  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

from detector.data import CocoInstances  # noqa: E402
from detector.data.builders import coins  # noqa: E402

# pycocotools' decode under numpy 2, and torchvision's own image decoders: not ours.
pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")]


@pytest.fixture(scope="module")
def photo():
    return coins.coins_photo()


@pytest.fixture(scope="module")
def labels(photo):
    return coins.segment_coins(photo)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return coins.make_coins_coco(tmp_path_factory.mktemp("coins"))


def _coco(annotations):
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotations))


def _to_photo(image, x, y):
    """A point of a dataset image, mapped back into the photo through its provenance."""
    x0, y0, x1, y1 = image["source_box"]
    if image["flip"]:
        x = image["width"] - x
    return x0 + x * (x1 - x0) / image["width"], y0 + y * (y1 - y0) / image["height"]


def test_segmentation_finds_24_round_coins(labels):
    assert labels.shape == (303, 384) and labels.dtype == np.int32
    assert sorted(np.unique(labels)) == list(range(25))
    from skimage import measure
    for region in measure.regionprops(labels):
        height, width = region.bbox[2] - region.bbox[0], region.bbox[3] - region.bbox[1]
        ellipse = np.pi / 4 * height * width
        assert 0.75 <= region.area / ellipse <= 1.25, (region.label, region.area, ellipse)
        assert 0.75 <= width / height <= 1.33, (region.label, width, height)
        assert 800 <= region.area <= 4000, (region.label, region.area)
        assert measure.label(labels == region.label).max() == 1  # one piece, no stray bits


def test_segmentation_numbers_coins_in_reading_order(labels):
    from skimage import measure
    centres = np.array([r.centroid for r in measure.regionprops(labels)])
    rows = centres[:, 0].reshape(4, 6)
    assert (rows.max(1)[:-1] < rows.min(1)[1:]).all()  # four rows of six, top to bottom
    assert (np.diff(centres[:, 1].reshape(4, 6), axis=1) > 0).all()  # left to right


def test_touching_coins_are_split():
    yy, xx = np.mgrid[:120, :160]
    image = 40 + np.random.default_rng(0).normal(0, 5, yy.shape)
    for cx in (55, 93):  # radius 20, centres 38 apart: the discs overlap
        image[(yy - 60) ** 2 + (xx - cx) ** 2 <= 20**2] = 190
    found = coins.segment_coins(np.clip(image, 0, 255).astype(np.uint8))
    assert found.max() == 2
    assert abs(int((found == 1).sum()) - int((found == 2).sum())) < 60


def test_segmentation_rejects_colour_images():
    with pytest.raises(ValueError, match="2-D grayscale"):
        coins.segment_coins(np.zeros((8, 8, 3), np.uint8))


def test_json_loads_and_masks_lie_in_their_boxes(dataset):
    for images_dir, annotations in dataset.values():
        coco = _coco(annotations)
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["coin"]
        for ann in coco.loadAnns(coco.getAnnIds()):
            mask = coco.annToMask(ann).astype(bool)
            ys, xs = np.nonzero(mask)
            x, y, w, h = ann["bbox"]
            assert ys.size == ann["area"] > 500, ann["id"]
            assert x == xs.min() and y == ys.min(), ann["id"]
            assert xs.max() == x + w - 1 and ys.max() == y + h - 1, ann["id"]
            assert ann["iscrowd"] == 0 and len(ann["segmentation"]) == 1


def test_splits_share_no_coin_and_use_all(dataset, labels):
    seen = {}
    for split, (_, annotations) in dataset.items():
        data = json.loads(annotations.read_text())
        images = {image["id"]: image for image in data["images"]}
        found = set()
        for ann in data["annotations"]:
            x, y, w, h = ann["bbox"]
            px, py = _to_photo(images[ann["image_id"]], x + w / 2, y + h / 2)
            coin = int(labels[int(py), int(px)])
            assert coin == ann["coin"], (split, ann["id"], coin)
            found.add(coin)
        for image in data["images"]:
            y0, y1 = image["source_box"][1::2]
            assert y1 <= coins.SPLIT_Y if split == "train" else y0 >= coins.SPLIT_Y
        seen[split] = found
    assert seen["train"] == set(range(1, 19)) and seen["val"] == set(range(19, 25))


def test_no_image_shows_part_of_a_coin(dataset, labels):
    for _, annotations in dataset.values():
        data = json.loads(annotations.read_text())
        for image in data["images"]:
            x0, y0, x1, y1 = image["source_box"]
            inside = set(np.unique(labels[y0:y1, x0:x1])) - {0}
            for coin in inside:
                ys, xs = np.nonzero(labels == coin)
                assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
            annotated = {a["coin"] for a in data["annotations"] if a["image_id"] == image["id"]}
            assert annotated == inside, image["id"]


def test_pixels_and_masks_match_the_photo(dataset, photo, labels):
    checked = 0
    for images_dir, annotations in dataset.values():
        coco = _coco(annotations)
        for image in coco.loadImgs(coco.getImgIds()):
            if image["scale"] != 1.0 or not image["file_name"].endswith(".png"):
                continue
            x0, y0, x1, y1 = image["source_box"]
            crop, crop_labels = photo[y0:y1, x0:x1], labels[y0:y1, x0:x1]
            if image["flip"]:
                crop, crop_labels = crop[:, ::-1], crop_labels[:, ::-1]
            pixels = np.asarray(Image.open(images_dir / image["file_name"]).convert("L"))
            np.testing.assert_array_equal(pixels, crop)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
                mask, truth = coco.annToMask(ann).astype(bool), crop_labels == ann["coin"]
                assert (mask & truth).sum() / (mask | truth).sum() > 0.97, ann["id"]
            checked += 1
    assert checked >= 3


def test_images_vary_in_size_scale_format_and_flip(dataset):
    counts = {}
    for split, (images_dir, annotations) in dataset.items():
        images = json.loads(annotations.read_text())["images"]
        counts[split] = len(images)
        shapes = {(i["height"] > i["width"], i["height"] < i["width"]) for i in images}
        assert {(True, False), (False, True)} <= shapes, split  # portrait and landscape
        assert len({i["scale"] for i in images}) >= 3, split
        assert {i["flip"] for i in images} == {False, True}, split
        kinds = set()
        for image in images:
            with Image.open(images_dir / image["file_name"]) as picture:
                assert picture.size == (image["width"], image["height"])
                kinds.add((picture.format, picture.mode))
        assert kinds == {("PNG", "L"), ("JPEG", "RGB"), ("PNG", "RGBA")}, split
    assert 20 <= counts["train"] <= 40 and 8 <= counts["val"] <= 12


def test_project_loader_reads_every_image(dataset):
    for images_dir, annotations in dataset.values():
        data = CocoInstances(images_dir, annotations)
        for index in range(len(data)):
            image, target = data[index]
            assert image.shape[0] == 3 and target["masks"].shape[1:] == image.shape[1:]
            assert len(target["boxes"]) >= 1


def test_writing_twice_gives_identical_files(dataset, tmp_path):
    again = coins.make_coins_coco(tmp_path)
    for split in ("train", "val"):
        (first_dir, first_json), (second_dir, second_json) = dataset[split], again[split]
        assert first_json.read_bytes() == second_json.read_bytes()
        assert ({p.name: p.read_bytes() for p in first_dir.iterdir()}
                == {p.name: p.read_bytes() for p in second_dir.iterdir()})
    stamp = again["train"][1].stat().st_mtime_ns
    assert coins.make_coins_coco(tmp_path) == again  # a finished folder is reused
    assert again["train"][1].stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["coins-v1"]  # no temporary folder left


def test_cli_writes_dataset_and_overlay(tmp_path, capsys):
    overlay = tmp_path / "overlay.png"
    coins.main([str(tmp_path / "out"), "--overlay", str(overlay)])
    assert (tmp_path / "out" / "coins-v1" / "val" / "annotations.json").is_file()
    assert "overlay:" in capsys.readouterr().out
    with Image.open(overlay) as picture:
        assert picture.format == "PNG" and picture.width >= 384


def test_import_without_skimage_and_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    module = importlib.reload(coins)
    with pytest.raises(ImportError, match="pip install scikit-image"):
        module.segment_coins(np.zeros((8, 8), np.uint8))
    monkeypatch.undo()
    importlib.reload(coins)
