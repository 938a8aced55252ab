"""A second small real-photo instance-segmentation dataset: the galaxies (and stars) of the
Hubble eXtreme Deep Field picture that scikit-image ships (``hubble_deep_field``, 872x1000
RGB), segmented by a threshold and written as COCO json with RLE masks.

Where the coins are a few large objects (about 1,100-4,000 pixels each, COCO's "medium"),
these are many small ones: a median of about 80 pixels, nearly all below COCO's 32x32 "small"
limit, the case where ROI Align is expected to matter most. scikit-image is needed only to
build the dataset; ``import detector.data.builders.galaxies`` works without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ..publishing import publish_folder

SMOOTHING = 1.0  # sigma (pixels) of the Gaussian blur before the threshold: noise, not shape
# brightness (0-1) above which a pixel belongs to a source: the brightest of its three channels,
# so that red galaxies count as much as blue ones (luminance would miss the red); the sky's
# median is 0.06, its 90th percentile 0.14
LEVEL = 0.2
MIN_AREA = 40  # pixels: a source this large is a "galaxy" instance
MIN_SPECK = 8  # pixels: smaller sources are noise; between the two, a crowd region (ignored)
SPLIT_X = 600  # the train / val boundary is the sky column nearest to this with no source on it
_FORMAT_VERSION = 1
SHAPES = ((192, 288), (288, 192), (240, 240))  # (height, width) of the crops: both orientations
CROPS = {"train": 36, "val": 12}
CROP_SEED = 0


def _require_skimage() -> None:
    try:
        import scipy.ndimage  # noqa: F401
        import skimage  # noqa: F401
    except ImportError as error:
        raise ImportError("the galaxies dataset needs scikit-image: pip install scikit-image"
                          ) from error


def hubble_photo() -> np.ndarray:
    """scikit-image's ``hubble_deep_field``: uint8 [872, 1000, 3], shipped with the package."""
    _require_skimage()
    from skimage import data
    return data.hubble_deep_field()


def source_brightness(image: np.ndarray) -> np.ndarray:
    """The brightest channel of a uint8 RGB photo, in [0, 1], blurred by SMOOTHING."""
    _require_skimage()
    from skimage import filters

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    return filters.gaussian(image.max(axis=-1) / 255.0, SMOOTHING)


def segment_sources(image: np.ndarray) -> np.ndarray:
    """Labels every source of an RGB sky photo: int32 [H, W], 0 for the sky, sources 1..N
    ordered by their first pixel in reading order. A source is a connected region (8-neighbour)
    of the blurred brightness (source_brightness) above LEVEL, holes filled, of at least
    MIN_SPECK pixels."""
    _require_skimage()
    from scipy import ndimage as ndi
    from skimage import measure, morphology

    brightness = source_brightness(image)
    labels = measure.label(ndi.binary_fill_holes(brightness > LEVEL), connectivity=2)
    labels = morphology.remove_small_objects(labels, max_size=MIN_SPECK - 1)
    return measure.label(labels > 0, connectivity=2).astype(np.int32)


def split_column(labels: np.ndarray) -> int:
    """The column nearest SPLIT_X that no galaxy (a source of MIN_AREA pixels or more)
    touches: train lies left of it, val right. Specks may cross it: they are crowd regions,
    which neither split learns or scores."""
    sizes = np.bincount(labels.ravel())
    galaxies = np.isin(labels, np.flatnonzero(sizes >= MIN_AREA)) & (labels > 0)
    empty = np.flatnonzero(~galaxies.any(axis=0))
    if not empty.size:
        raise RuntimeError("no column of the photo is free of galaxies")
    return int(empty[np.argmin(np.abs(empty - SPLIT_X))])


def crop_windows(split: str, height: int, width: int, split_x: int) -> list[tuple[int, ...]]:
    """CROPS[split] windows (x0, y0, x1, y1) of SHAPES, at places drawn from CROP_SEED inside the
    split's part of the photo (they may overlap one another, never the other split's part)."""
    rng = np.random.default_rng([CROP_SEED, list(CROPS).index(split)])
    left, right = (0, split_x) if split == "train" else (split_x + 1, width)
    windows = []
    for index in range(CROPS[split]):
        h, w = SHAPES[index % len(SHAPES)]
        w = min(w, right - left)
        x0 = int(rng.integers(left, right - w + 1))
        y0 = int(rng.integers(0, height - h + 1))
        windows.append((x0, y0, x0 + w, y0 + h))
    return windows


def make_galaxies_coco(root: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """Writes (once) the galaxies dataset under ``root``; returns {split: (images_dir,
    annotations_json)} for "train" and "val".

    Each image is a crop of the photo (crop_windows, RGB PNG). Its instances are the sources
    of at least MIN_AREA pixels inside it (cut at the crop's edge where they cross it: the
    visible part, as COCO labels objects at an image's border), one category "galaxy"; smaller
    sources (and a crossing source's part under MIN_AREA) are crowd regions, which training
    and COCOeval ignore, so the faint specks are neither found nor missed. Masks are exact RLE
    crops of segment_sources' labels; every annotation carries its "source" label, and every
    image its "source_box" in the photo. Train and val lie on either side of split_column, so
    they share no source. Output is deterministic; a finished folder is reused as it is.
    """
    final = Path(root) / f"galaxies-v{_FORMAT_VERSION}"
    splits = {split: (final / split / "images", final / split / "annotations.json")
              for split in CROPS}
    if all(images.is_dir() and path.is_file() for images, path in splits.values()):
        return splits
    photo = hubble_photo()
    labels = segment_sources(photo)
    split_x = split_column(labels)
    sizes = np.bincount(labels.ravel())

    def write(tmp: Path) -> None:
        for split in CROPS:
            windows = crop_windows(split, *labels.shape, split_x)
            _write_split(tmp / split, split, photo, labels, sizes, windows, split_x)

    publish_folder(final, write, lambda folder: all(
        (folder / s / "annotations.json").is_file() for s in CROPS))
    return splits


def _write_split(folder: Path, split: str, photo: np.ndarray, labels: np.ndarray,
                 sizes: np.ndarray, windows: list, split_x: int) -> None:
    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    for x0, y0, x1, y1 in windows:
        image_id = len(images) + 1
        file_name = f"{image_id:04d}.png"
        Image.fromarray(photo[y0:y1, x0:x1]).save(folder / "images" / file_name)
        images.append({"id": image_id, "file_name": file_name, "height": y1 - y0,
                       "width": x1 - x0, "source_box": [x0, y0, x1, y1]})
        crop = labels[y0:y1, x0:x1]
        for source in np.unique(crop[crop > 0]):
            mask = np.asfortranarray((crop == source).astype(np.uint8))
            rle = mask_utils.encode(mask)
            area = int(mask_utils.area(rle))
            crowd = int(sizes[source] < MIN_AREA or area < MIN_AREA)
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                "segmentation": rle, "area": area,
                "bbox": [int(v) for v in mask_utils.toBbox(rle)], "iscrowd": crowd,
                "source": int(source)})
    dataset = {
        "info": {"description": "sources of skimage.data.hubble_deep_field, segmented by a "
                 "threshold", "version": str(_FORMAT_VERSION), "split": split,
                 "split_x": split_x},
        "licenses": [], "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "galaxy", "supercategory": "sky"}]}
    (folder / "annotations.json").write_text(json.dumps(dataset))


def draw_overlay(path: str | os.PathLike, photo: np.ndarray | None = None,
                 labels: np.ndarray | None = None) -> Path:
    """The photo with every source's outline (train blue, val orange, crowd specks grey) and
    the split column; writes a PNG to ``path`` and returns it."""
    from matplotlib.figure import Figure

    photo = hubble_photo() if photo is None else photo
    labels = segment_sources(photo) if labels is None else labels
    split_x = split_column(labels)
    sizes = np.bincount(labels.ravel())
    height, width = labels.shape
    figure = Figure(figsize=(width / 100, height / 100), dpi=200)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(photo, interpolation="nearest")
    columns = np.arange(width)[None, :]
    small = np.isin(labels, np.flatnonzero(sizes < MIN_AREA)) & (labels > 0)
    for region, colour in (((labels > 0) & ~small & (columns < split_x), "#4aa3ff"),
                           ((labels > 0) & ~small & (columns > split_x), "#ff9f1c"),
                           (small, "#9a9a9a")):
        axes.contour(region, levels=[0.5], colors=colour, linewidths=0.4)
    axes.axvline(split_x, color="#d62728", linestyle="--", linewidth=1.0)
    for text, x, ha in (("train", split_x - 6, "right"), ("val", split_x + 6, "left")):
        axes.text(x, 14, text, color="white", fontsize=9, ha=ha, va="top", weight="bold",
                  bbox={"fc": "#d62728", "lw": 0, "pad": 1})
    axes.set_axis_off()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m detector.data.builders.galaxies",
                                     description="Write the galaxies dataset (COCO json + images).")
    parser.add_argument("out_dir", help="folder to write galaxies-v*/{train,val} under")
    parser.add_argument("--overlay", metavar="PNG", help="also draw the segmentation here")
    args = parser.parse_args(argv)
    for split, (images, annotations) in make_galaxies_coco(args.out_dir).items():
        print(f"{split}: {images} {annotations}")
    if args.overlay:
        print(f"overlay: {draw_overlay(args.overlay)}")


if __name__ == "__main__":
    main()
