"""A small real-photo instance-segmentation dataset: the 24 coins of scikit-image's ``coins``
picture (303x384 grayscale), segmented once by classical means and written as COCO json.

scikit-image is needed only to build the dataset (``pip install scikit-image``); it is imported
inside the functions, so ``import detector.data.builders.coins`` works without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ..publishing import publish_folder

# The background's brightness runs from ~120 (top left) to ~35 (bottom middle), and the coins of
# the bottom row average ~130, so no global threshold separates them (the tutorial's <30 / >150
# leaves the bright top left without background markers). Markers are thresholds on the top-hat
# (the image less its opening by a disk wider than any coin, i.e. less its lighting): there the
# background lies below ~45 and the coins' cores above ~60.
TOPHAT_RADIUS = 36
BACKGROUND_LEVEL = 20
COIN_LEVEL = 80
MIN_AREA = 200  # smaller regions are specks, not coins (the smallest coin has ~1100 pixels)
MIN_SOLIDITY = 0.9  # a region below it may be touching coins, split by its distance transform
PEAK_DISTANCE = 10  # pixels between the centres of two touching coins, at least
MIN_RADIUS = 8  # the smallest coin radius that a split may produce


def _require_skimage() -> None:
    try:
        import scipy.ndimage  # noqa: F401
        import skimage  # noqa: F401
    except ImportError as error:
        raise ImportError("the coins dataset needs scikit-image: pip install scikit-image"
                          ) from error


def coins_photo() -> np.ndarray:
    """scikit-image's ``coins`` picture: uint8 [303, 384], shipped with the package."""
    _require_skimage()
    from skimage import data
    return data.coins()


def segment_coins(image: np.ndarray) -> np.ndarray:
    """Labels every coin of a grayscale photo (values 0-255): int32 [H, W], 0 for the
    background, coins 1..N in reading order (rows top to bottom, left to right in a row).

    As in scikit-image's "edge-based and region-based segmentation" tutorial: a watershed of the
    Sobel gradient from background and coin markers, holes filled; then regions that are not
    convex enough are split at their distance transform's peaks, and specks removed.
    """
    _require_skimage()
    from scipy import ndimage as ndi
    from skimage import filters, measure, morphology, segmentation

    image = np.asarray(image)
    if image.ndim != 2 or image.dtype.kind not in "uif":
        raise ValueError(f"expected a 2-D grayscale image, got {image.dtype} {image.shape}")
    image = image.astype(np.float64)
    lighting = morphology.opening(image, morphology.disk(TOPHAT_RADIUS, decomposition="sequence"))
    relief = image - lighting
    markers = np.zeros(image.shape, np.int32)
    markers[relief < BACKGROUND_LEVEL] = 1
    markers[relief > COIN_LEVEL] = 2
    coins = segmentation.watershed(filters.sobel(image), markers) == 2
    labels = measure.label(ndi.binary_fill_holes(coins))
    labels = _split_touching(labels)
    labels = morphology.remove_small_objects(labels, max_size=MIN_AREA)
    return _reading_order(labels)


def _split_touching(labels: np.ndarray) -> np.ndarray:
    """Splits each region of low solidity by a watershed of its distance transform."""
    from scipy import ndimage as ndi
    from skimage import feature, measure, segmentation

    out = np.zeros(labels.shape, np.int32)
    count = 0
    for region in measure.regionprops(labels):
        mask = region.image
        parts = mask.astype(np.int32)
        if region.solidity < MIN_SOLIDITY:
            distance = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
            peaks = feature.peak_local_max(distance, min_distance=PEAK_DISTANCE,
                                           threshold_abs=MIN_RADIUS, labels=parts,
                                           exclude_border=False)
            if len(peaks) > 1:
                seeds = np.zeros(mask.shape, np.int32)
                seeds[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
                parts = segmentation.watershed(-distance, seeds, mask=mask)
        window = out[region.slice]
        for part in range(1, int(parts.max()) + 1):
            window[parts == part] = count = count + 1
    return out


def _reading_order(labels: np.ndarray) -> np.ndarray:
    """Renumbers regions row by row: a region joins a row if its centre lies within the row's
    vertical extent, else it starts the next row."""
    from skimage import measure

    rows: list[list] = []
    for region in sorted(measure.regionprops(labels), key=lambda r: r.centroid):
        if rows and region.centroid[0] < max(r.bbox[2] for r in rows[-1]):
            rows[-1].append(region)
        else:
            rows.append([region])
    out = np.zeros(labels.shape, np.int32)
    ordered = [r for row in rows for r in sorted(row, key=lambda r: r.centroid[1])]
    for index, region in enumerate(ordered, start=1):
        out[labels == region.label] = index
    return out


# ---------------------------------------------------------------------------------------------
# The dataset. The photo holds four rows of six coins; the line y = SPLIT_Y runs between the
# third and fourth rows, so rows 1-3 (coins 1-18) make the train split and row 4 (19-24) val.
SPLIT_Y = 225
_FORMAT_VERSION = 1
SCALES = (1.0, 0.75, 1.5, 2.0)
FORMATS = (("L", "png"), ("RGB", "jpg"), ("RGBA", "png"))  # RGBA is opaque (alpha 255)
POLYGON_TOLERANCE = 0.5  # pixels of the photo, for skimage.measure.approximate_polygon
# Proposed crops as (x0, y0, x1, y1) fractions of a split's part of the photo, with how many
# variants (scale, flip, format) of each to write; edges then move into the gaps between coins.
_CROPS = {
    "train": (((0, 0, 1, 1), 3), ((0, 0, .5, 1), 3), ((.5, 0, 1, 1), 3), ((0, 0, 1, .66), 3),
              ((0, .4, 1, 1), 3), ((0, 0, .35, .66), 3), ((.3, .2, .7, .8), 3),
              ((.6, .3, 1, 1), 3), ((.8, 0, 1, .35), 3), ((0, .7, .45, 1), 3)),
    "val": (((0, 0, 1, 1), 2), ((0, 0, .5, 1), 2), ((.5, 0, 1, 1), 2), ((.37, 0, .53, 1), 2),
            ((.55, 0, .71, 1), 2)),
}


def make_coins_coco(root: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """Writes (once) the coins dataset under ``root``; returns {split: (images_dir,
    annotations_json)} for "train" and "val".

    Train images come from the photo above ``SPLIT_Y``, val images from below it, so the splits
    share no coin. Each image is a crop, scaled by one of ``SCALES`` (Lanczos, antialiased),
    maybe mirrored left-right, saved as grayscale PNG, RGB JPEG (quality 95) or RGBA PNG.
    Crop edges lie in the gaps between coins: a coin at least half inside a proposed crop is
    taken in whole, any other is left out whole, so no image shows part of a coin.
    Segmentations are polygons of the photo's masks mapped into each image; image entries carry
    their provenance ("source_box" [x0, y0, x1, y1] in the photo, "scale", "flip") and each
    annotation its "coin" (the photo's label). Output is deterministic; a finished folder is
    reused as it is, and an interrupted run leaves only a hidden temporary folder behind.
    """
    final = Path(root) / f"coins-v{_FORMAT_VERSION}"
    splits = {split: (final / split / "images", final / split / "annotations.json")
              for split in _CROPS}
    if _is_complete(splits):
        return splits
    photo = coins_photo()
    labels = segment_coins(photo)
    crossing = sorted(set(labels[SPLIT_Y - 1]) & set(labels[SPLIT_Y]) - {0})
    if crossing:
        raise RuntimeError(f"coins {crossing} cross the split line y = {SPLIT_Y}")
    polygons = _polygons(labels)

    def write(tmp: Path) -> None:
        for split, crops in _CROPS.items():
            _write_split(tmp / split, split, photo, labels, polygons, crops)

    publish_folder(final, write, lambda folder: _is_complete(splits))
    return splits


def _is_complete(splits: dict[str, tuple[Path, Path]]) -> bool:
    return all(images.is_dir() and json_file.is_file() for images, json_file in splits.values())


def _polygons(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Each coin's outline as [K, 2] (x, y) points, pixel (r, c) covering [c, c+1) x [r, r+1)."""
    from skimage import measure

    polygons = {}
    for coin in range(1, int(labels.max()) + 1):
        padded = np.pad(labels == coin, 1).astype(np.float64)
        contour = max(measure.find_contours(padded, 0.5), key=len) - 0.5
        contour = measure.approximate_polygon(contour, POLYGON_TOLERANCE)
        polygons[coin] = contour[:, ::-1]
    return polygons


def _part(split: str, height: int, width: int) -> tuple[int, int, int, int]:
    return (0, 0, width, SPLIT_Y) if split == "train" else (0, SPLIT_Y, width, height)


def _snap(box: tuple[int, ...], labels: np.ndarray) -> tuple[int, ...]:
    """Moves the box's edges until every coin it touches lies wholly inside: a coin half or
    more inside is taken in, any other left out (the smallest cut that excludes it)."""
    from skimage import measure

    totals = np.bincount(labels.ravel())
    bounds = {r.label: r.bbox for r in measure.regionprops(labels)}  # (y0, x0, y1, x1)
    for _ in range(100):
        x0, y0, x1, y1 = box
        inside = np.bincount(labels[y0:y1, x0:x1].ravel(), minlength=len(totals))
        cut = np.flatnonzero((inside > 0) & (inside < totals))
        cut = cut[cut > 0]
        if not cut.size:
            return box
        coin = int(cut[0])
        cy0, cx0, cy1, cx1 = bounds[coin]
        if inside[coin] >= totals[coin] / 2:
            box = (min(x0, cx0), min(y0, cy0), max(x1, cx1), max(y1, cy1))
            continue
        options = [(max(x0, cx1), y0, x1, y1), (x0, y0, min(x1, cx0), y1),
                   (x0, max(y0, cy1), x1, y1), (x0, y0, x1, min(y1, cy0))]
        box = max((b for b in options if b[2] > b[0] and b[3] > b[1]),
                  key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    raise RuntimeError(f"no crop near {box} leaves every coin whole")


def _write_split(folder: Path, split: str, photo: np.ndarray, labels: np.ndarray,
                 polygons: dict[int, np.ndarray], crops: tuple) -> None:
    (folder / "images").mkdir(parents=True)
    px0, py0, px1, py1 = _part(split, *photo.shape)
    images, annotations = [], []
    for index, (fractions, variants) in enumerate(crops):
        fx0, fy0, fx1, fy1 = fractions
        box = (round(px0 + fx0 * (px1 - px0)), round(py0 + fy0 * (py1 - py0)),
               round(px0 + fx1 * (px1 - px0)), round(py0 + fy1 * (py1 - py0)))
        x0, y0, x1, y1 = _snap(box, labels)
        coins = sorted(set(np.unique(labels[y0:y1, x0:x1])) - {0})
        for variant in range(variants):
            scale = SCALES[(index + variant) % len(SCALES)]
            flip = (index // 2 + variant) % 2 == 1
            mode, ext = FORMATS[(index + 2 * variant) % len(FORMATS)]
            width, height = round((x1 - x0) * scale), round((y1 - y0) * scale)
            picture = Image.fromarray(photo[y0:y1, x0:x1])
            if scale != 1.0:
                picture = picture.resize((width, height), Image.Resampling.LANCZOS)
            if flip:
                picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            image_id = len(images) + 1
            file_name = f"{image_id:04d}.{ext}"
            options = {"quality": 95} if ext == "jpg" else {}
            picture.convert(mode).save(folder / "images" / file_name, **options)
            images.append({"id": image_id, "file_name": file_name, "height": height,
                           "width": width, "source_box": [x0, y0, x1, y1], "scale": scale,
                           "flip": flip})
            for coin in coins:
                points = (polygons[coin] - (x0, y0)) * (width / (x1 - x0), height / (y1 - y0))
                if flip:
                    points[:, 0] = width - points[:, 0]
                polygon = [round(float(v), 2) for v in points.ravel()]
                rle = mask_utils.merge(mask_utils.frPyObjects([polygon], height, width))
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                    "segmentation": [polygon], "area": int(mask_utils.area(rle)),
                    "bbox": [int(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0,
                    "coin": int(coin)})
    dataset = {
        "info": {"description": "coins of skimage.data.coins, segmented by watershed",
                 "version": str(_FORMAT_VERSION), "split": split, "split_y": SPLIT_Y},
        "licenses": [], "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "coin", "supercategory": "coin"}]}
    (folder / "annotations.json").write_text(json.dumps(dataset))


def draw_overlay(path: str | os.PathLike, photo: np.ndarray | None = None,
                 labels: np.ndarray | None = None) -> Path:
    """Draws the photo with every coin's outline and label, coloured by split, and the split
    line; writes a PNG to ``path`` and returns it."""
    from matplotlib.figure import Figure

    photo = coins_photo() if photo is None else photo
    labels = segment_coins(photo) if labels is None else labels
    height, width = photo.shape
    figure = Figure(figsize=(width / 50, height / 50), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(photo, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    colours = {"train": "#1f77b4", "val": "#ff7f0e"}
    for coin in range(1, int(labels.max()) + 1):
        ys, xs = np.nonzero(labels == coin)
        split = "train" if ys.mean() < SPLIT_Y else "val"
        axes.contour(labels == coin, levels=[0.5], colors=colours[split], linewidths=1.5)
        axes.text(xs.mean(), ys.mean(), str(coin), color="white", fontsize=11, ha="center",
                  va="center", weight="bold",
                  bbox={"boxstyle": "round,pad=0.15", "fc": colours[split], "lw": 0})
    axes.axhline(SPLIT_Y - 0.5, color="#d62728", linestyle="--", linewidth=1.5)
    for split, y, va in (("train", SPLIT_Y - 3, "bottom"), ("val", SPLIT_Y + 2, "top")):
        axes.text(8, y, split, color=colours[split], fontsize=10, ha="left", va=va,
                  weight="bold", bbox={"fc": "white", "lw": 0, "pad": 1})
    axes.set_axis_off()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m detector.data.builders.coins",
                                     description="Write the coins dataset (COCO json + images).")
    parser.add_argument("out_dir", help="folder to write coins-v*/{train,val} under")
    parser.add_argument("--overlay", metavar="PNG", help="also draw the segmentation here")
    args = parser.parse_args(argv)
    for split, (images, annotations) in make_coins_coco(args.out_dir).items():
        print(f"{split}: {images} {annotations}")
    if args.overlay:
        print(f"overlay: {draw_overlay(args.overlay)}")


if __name__ == "__main__":
    main()
