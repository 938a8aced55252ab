"""The galaxies dataset: sources of skimage's Hubble Deep Field segmented as the
threshold says, many and small; train and val share no galaxy; the COCO json's
masks are exact crops of the segmentation, its boxes their extents, the faint
specks crowd regions; and it reads through CocoInstances."""

import contextlib
import io
import json

import numpy as np
import pytest

pytest.importorskip("skimage")

from pycocotools.coco import COCO  # noqa: E402

from detector.data import CocoInstances  # noqa: E402
from detector.data.builders import galaxies  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


@pytest.fixture(scope="module")
def photo():
    return galaxies.hubble_photo()


@pytest.fixture(scope="module")
def labels(photo):
    return galaxies.segment_sources(photo)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return galaxies.make_galaxies_coco(tmp_path_factory.mktemp("galaxies"))


def _coco(path):
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_discs_on_a_noisy_sky_are_found_whole():
    rng = np.random.default_rng(0)
    sky = rng.normal(12, 4, (120, 160, 3))
    yy, xx = np.mgrid[:120, :160]
    centres = [(30, 30, 6), (30, 110, 9), (90, 60, 4), (80, 130, 12)]
    for cy, cx, r in centres:
        sky[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = 200
    found = galaxies.segment_sources(np.clip(sky, 0, 255).astype(np.uint8))
    assert found.max() == len(centres)
    for cy, cx, r in centres:
        region = found == found[cy, cx]
        assert found[cy, cx] > 0
        # the blur widens a disc's edge by well under a pixel at this threshold
        assert abs(region.sum() - np.pi * r**2) <= 2 * np.pi * r, (r, region.sum())


def test_sources_are_bright_and_the_sky_is_not(photo, labels):
    from skimage import filters
    luminance = filters.gaussian(photo.max(axis=-1) / 255, galaxies.SMOOTHING)
    from skimage import measure
    # what is bright outside the sources are specks under MIN_SPECK pixels, dropped as noise
    left = measure.label((luminance > galaxies.LEVEL) & (labels == 0), connectivity=2)
    assert np.bincount(left.ravel())[1:].max() < galaxies.MIN_SPECK
    assert luminance[labels > 0].mean() > 3 * luminance[labels == 0].mean()
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.min() >= galaxies.MIN_SPECK
    big = sizes[sizes >= galaxies.MIN_AREA]
    assert 200 <= len(big) <= 350
    # red galaxies too: sources whose red channel outshines the green, mostly
    red = [s for s in range(1, labels.max() + 1)
           if photo[labels == s][:, 0].mean() > 1.3 * photo[labels == s][:, 1].mean()]
    assert len(red) >= 10
    # mostly COCO-small (under 32 x 32 pixels): unlike the coins, of 1,100-4,000 pixels
    assert np.median(big) < 150 and (big < 32 * 32).mean() > 0.95


def test_splits_share_no_galaxy(dataset, labels):
    split_x = galaxies.split_column(labels)
    sizes = np.bincount(labels.ravel())
    seen = {}
    for split, (_, path) in dataset.items():
        data = json.loads(path.read_text())
        assert data["info"]["split_x"] == split_x
        for image in data["images"]:
            x0, _, x1, _ = image["source_box"]
            assert (x1 <= split_x) if split == "train" else (x0 > split_x)
        seen[split] = {a["source"] for a in data["annotations"] if not a["iscrowd"]}
        assert all(sizes[s] >= galaxies.MIN_AREA for s in seen[split])
    assert seen["train"] and seen["val"] and not seen["train"] & seen["val"]


def test_masks_are_exact_crops_and_boxes_their_extents(dataset, labels, photo):
    for split, (images_dir, path) in dataset.items():
        coco = _coco(path)
        for image_id, image in coco.imgs.items():
            x0, y0, x1, y1 = image["source_box"]
            crop = labels[y0:y1, x0:x1]
            anns = coco.imgToAnns[image_id]
            assert sorted(a["source"] for a in anns) == sorted(set(np.unique(crop)) - {0})
            for ann in anns:
                mask = coco.annToMask(ann)
                assert np.array_equal(mask, crop == ann["source"])
                ys, xs = np.nonzero(mask)
                assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(),
                                       ys.max() + 1 - ys.min()]
                assert ann["area"] == mask.sum()
                assert ann["iscrowd"] == int(ann["area"] < galaxies.MIN_AREA
                                             or (labels == ann["source"]).sum()
                                             < galaxies.MIN_AREA)
        first = coco.imgs[1]
        from PIL import Image
        x0, y0, x1, y1 = first["source_box"]
        assert np.array_equal(np.asarray(Image.open(images_dir / first["file_name"])),
                              photo[y0:y1, x0:x1])


def test_both_orientations_and_readable_targets(dataset):
    images_dir, path = dataset["train"]
    data = CocoInstances(images_dir, path)
    ratios = data.aspect_ratios()
    assert min(ratios) < 1 < max(ratios)  # portrait and landscape crops
    image, target = data[0]
    coco = _coco(path)
    kept = [a for a in coco.imgToAnns[data.image_ids[0]] if not a["iscrowd"]]
    assert image.shape[-2:] == (coco.imgs[data.image_ids[0]]["height"],
                                coco.imgs[data.image_ids[0]]["width"])
    assert len(target["boxes"]) == len(kept) > 0  # crowd specks are left out of the targets
    assert target["has_mask"].all()


def test_crops_are_deterministic_and_inside_their_part():
    for split in galaxies.CROPS:
        windows = galaxies.crop_windows(split, 872, 1000, 683)
        assert windows == galaxies.crop_windows(split, 872, 1000, 683)
        assert len(windows) == galaxies.CROPS[split]
        for x0, y0, x1, y1 in windows:
            assert 0 <= y0 < y1 <= 872
            assert (0 <= x0 and x1 <= 683) if split == "train" else (683 < x0 and x1 <= 1000)


def test_rejects_a_grayscale_photo():
    with pytest.raises(ValueError, match="expected a uint8 RGB image"):
        galaxies.segment_sources(np.zeros((10, 10), np.uint8))
