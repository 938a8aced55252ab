"""The built-in synthetic instance-segmentation dataset: shapes on textured backgrounds, written
once as PNG images + a COCO json, so that nothing ever needs a download.

Masks are exact: each shape is a set of pixel centres chosen by a closed-form test (disc,
rotated box, half-planes, ...), and the image paints exactly those pixels, with hard edges.
Later shapes occlude earlier ones; every annotation is the visible part of its shape. A shape
that would hide too much of an earlier one (below ``MIN_VISIBLE_FRACTION`` of its area, below
``MIN_PIXELS``, or out of its size range) is placed elsewhere or left out, so every painted
object is annotated.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from ..publishing import publish_folder

CATEGORIES = ("circle", "rectangle", "triangle", "ellipse", "star", "ring")
OBJECT_SIZES = ("small", "medium", "large", "mixed")

MIN_PIXELS = 16
MIN_VISIBLE_FRACTION = 0.3
# COCO's evaluation ranges on the visible area (boundaries excluded, so that no object counts
# in two ranges): small < 32^2 < medium < 96^2 < large.
AREA_RANGES = {"small": (MIN_PIXELS, 32**2), "medium": (32**2, 96**2), "large": (96**2, math.inf)}
# Areas drawn (log-uniformly) before rasterizing, inside the ranges above with some margin; the
# upper end of each is also capped at MAX_AREA_FRACTION of the square on the image's short side.
_TARGET_AREAS = {"small": (10**2, 30**2), "medium": (36**2, 88**2), "large": (104**2, math.inf)}
MAX_AREA_FRACTION = 0.35
_PLACEMENT_TRIES = 20
_FORMAT_VERSION = 1  # part of the cache key: bump it when the generator's output changes

Shape = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (u, v) in the shape's frame -> inside


def make_synthetic_coco(root: str | os.PathLike, split: str = "train", num_images: int = 200,
                        image_size: Sequence[int] = (256, 320), object_size: str = "mixed",
                        max_objects: int = 6, seed: int = 0) -> tuple[Path, Path]:
    """Writes (once) a synthetic split under ``root``; returns (images_dir, annotations_json).

    The folder's name comes from every argument, and a finished folder is reused as it is.
    Output is deterministic for given arguments; image ``i`` depends on (seed, split, i) only.
    ``image_size`` is (height, width). ``object_size`` picks COCO's small / medium / large range
    for every object's visible area, or "mixed" for all ranges that fit the image.
    """
    height, width = _check_args(split, num_images, image_size, object_size, max_objects, seed)
    num_images, max_objects, seed = int(num_images), int(max_objects), int(seed)
    sizes = _sizes_that_fit(object_size, height, width)
    key = json.dumps([_FORMAT_VERSION, split, num_images, [height, width], object_size,
                      max_objects, seed])
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    name = f"synthetic-{split}-{num_images}x{height}x{width}-{object_size}-seed{seed}-{digest}"
    root = Path(root)
    final = root / name
    if _is_complete(final):
        return final / "images", final / "annotations.json"

    publish_folder(final, lambda tmp: _write(tmp, split, num_images, height, width, sizes,
                                             max_objects, seed), _is_complete)
    return final / "images", final / "annotations.json"


def _check_args(split, num_images, image_size, object_size, max_objects, seed) -> tuple[int, int]:
    if not isinstance(split, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", split):
        raise ValueError(f"split must be a non-empty name of letters, digits, '_' or '-', "
                         f"got {split!r}")
    if not _is_int(num_images) or num_images < 1:
        raise ValueError(f"num_images must be a positive integer, got {num_images!r}")
    if (not isinstance(image_size, Sequence) or len(image_size) != 2
            or not all(_is_int(s) and s >= 32 for s in image_size)):
        raise ValueError(f"image_size must be (height, width), integers >= 32, got {image_size!r}")
    if object_size not in OBJECT_SIZES:
        raise ValueError(f"object_size must be one of {OBJECT_SIZES}, got {object_size!r}")
    if not _is_int(max_objects) or max_objects < 1:
        raise ValueError(f"max_objects must be a positive integer, got {max_objects!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    height, width = int(image_size[0]), int(image_size[1])
    if object_size != "mixed" and not _sizes_that_fit(object_size, height, width):
        raise ValueError(f"object_size {object_size!r} does not fit image_size {tuple(image_size)}"
                         f"; use a larger image (short side >= {_min_side(object_size)})")
    return height, width


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _target_range(size: str, height: int, width: int) -> tuple[float, float]:
    low, high = _TARGET_AREAS[size]
    return low, min(high, MAX_AREA_FRACTION * min(height, width) ** 2)


def _min_side(size: str) -> int:
    return math.ceil(math.sqrt(1.2 * _TARGET_AREAS[size][0] / MAX_AREA_FRACTION))


def _sizes_that_fit(object_size: str, height: int, width: int) -> tuple[str, ...]:
    wanted = ("small", "medium", "large") if object_size == "mixed" else (object_size,)
    return tuple(s for s in wanted if min(height, width) >= _min_side(s))


def _is_complete(folder: Path) -> bool:
    return (folder / "images").is_dir() and (folder / "annotations.json").is_file()


def _write(folder: Path, split, num_images, height, width, sizes, max_objects, seed) -> None:
    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    split_key = zlib.crc32(split.encode())
    for index in tqdm(range(num_images), desc=f"synthetic {split}", unit="img", disable=None):
        rng = np.random.default_rng([seed, split_key, index])
        image, classes, masks = _draw_image(rng, height, width, sizes, max_objects)
        image_id = index + 1
        file_name = f"{image_id:06d}.png"
        Image.fromarray(image).save(folder / "images" / file_name, format="PNG", compress_level=1)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        rles = mask_utils.encode(np.asfortranarray(masks.astype(np.uint8))) if classes else []
        for k, (label, rle) in enumerate(zip(classes, rles)):
            mask = masks[..., k]
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            x, y = int(cols[0]), int(rows[0])
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": label,
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                "area": int(mask.sum()),
                "bbox": [x, y, int(cols[-1]) - x + 1, int(rows[-1]) - y + 1], "iscrowd": 0})
    dataset = {
        "info": {"description": "detector synthetic shapes", "version": str(_FORMAT_VERSION),
                 "split": split, "seed": seed},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"}
                       for i, name in enumerate(CATEGORIES)],
    }
    (folder / "annotations.json").write_text(json.dumps(dataset))


def _draw_image(rng: np.random.Generator, height: int, width: int, sizes: tuple[str, ...],
                max_objects: int) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Returns the uint8 [H, W, 3] image, the category ids and the visible masks [H, W, N]."""
    image = _background(rng, height, width)
    owner = np.zeros((height, width), np.int16)  # 0: background, k: the k-th placed object
    visible, full, lowest, classes = [0], [0], [0.0], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(1, len(CATEGORIES) + 1))
        size = sizes[int(rng.integers(len(sizes)))]
        low, high = AREA_RANGES[size]
        for _ in range(_PLACEMENT_TRIES):
            placed = _place(rng, label, _target_range(size, height, width), height, width)
            if placed is None:
                continue
            window, mask = placed
            area = int(mask.sum())
            if not low < area < high:
                continue
            lost = np.bincount(owner[window][mask], minlength=len(visible))
            left = np.asarray(visible) - lost
            floor = np.maximum(np.maximum(MIN_VISIBLE_FRACTION * np.asarray(full), MIN_PIXELS),
                               np.asarray(lowest))
            if (left[1:] <= floor[1:]).any():
                continue
            visible[:] = left.tolist()
            visible.append(area)
            full.append(area)
            lowest.append(low)
            classes.append(label)
            owner[window][mask] = len(visible) - 1
            _paint(rng, image, window, mask)
            break
    image += np.float32(rng.uniform(3.0, 10.0)) * rng.standard_normal(image.shape, np.float32)
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    masks = owner[..., None] == np.arange(1, len(classes) + 1, dtype=np.int16)
    return image, classes, masks


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth two-colour gradient, a low-frequency blotch pattern and faint stripes (float)."""
    ys = np.arange(height, dtype=np.float32)[:, None] / max(height, width)
    xs = np.arange(width, dtype=np.float32)[None, :] / max(height, width)
    c0, c1 = rng.uniform(30.0, 225.0, (2, 3)).astype(np.float32)
    angle = rng.uniform(0.0, 2 * math.pi)
    t = xs * math.cos(angle) + ys * math.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    image = c0 + (c1 - c0) * t[..., None]
    grid_h, grid_w = rng.integers(3, 8, 2)
    grid = rng.normal(0.0, rng.uniform(10.0, 30.0), (grid_h, grid_w, 3)).astype(np.float32)
    rows, cols = _lerp_matrix(height, grid_h), _lerp_matrix(width, grid_w)
    image += np.einsum("hy,yxc,wx->hwc", rows, grid, cols, optimize=True)
    freq, phase, turn = rng.uniform(2.0, 12.0), rng.uniform(0, 2 * math.pi), rng.uniform(0, math.pi)
    stripes = np.sin(2 * math.pi * freq * (xs * math.cos(turn) + ys * math.sin(turn)) + phase)
    tint = rng.uniform(-1.0, 1.0, 3).astype(np.float32) * rng.uniform(3.0, 15.0)
    return image + stripes[..., None].astype(np.float32) * tint


def _lerp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """[n_out, n_in] weights of linear interpolation from n_in samples to n_out."""
    pos = np.linspace(0.0, n_in - 1, n_out)
    lo = np.minimum(pos.astype(int), n_in - 2)
    frac = (pos - lo).astype(np.float32)
    weights = np.zeros((n_out, n_in), np.float32)
    weights[np.arange(n_out), lo] = 1 - frac
    weights[np.arange(n_out), lo + 1] = frac
    return weights


def _place(rng: np.random.Generator, label: int, areas: tuple[float, float], height: int,
           width: int) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Draws a shape of a log-uniform area at a random pose; its mask in a window of the image."""
    area = math.exp(rng.uniform(math.log(areas[0]), math.log(areas[1])))
    inside, radius = _SHAPES[CATEGORIES[label - 1]](rng, area)
    margin_y, margin_x = min(0.6 * radius, height / 2), min(0.6 * radius, width / 2)
    cy, cx = rng.uniform(margin_y, height - margin_y), rng.uniform(margin_x, width - margin_x)
    y0, y1 = max(0, math.floor(cy - radius - 1)), min(height, math.ceil(cy + radius + 1))
    x0, x1 = max(0, math.floor(cx - radius - 1)), min(width, math.ceil(cx + radius + 1))
    if y0 >= y1 or x0 >= x1:
        return None
    dy = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5 - cy  # pixel centres
    dx = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5 - cx
    angle = rng.uniform(0.0, 2 * math.pi)
    cos, sin = math.cos(angle), math.sin(angle)
    mask = inside(cos * dx + sin * dy, cos * dy - sin * dx)
    return (slice(y0, y1), slice(x0, x1)), mask


def _paint(rng: np.random.Generator, image: np.ndarray, window, mask: np.ndarray) -> None:
    """Fills the mask's pixels with a colour far from what lies beneath, with a mild shading."""
    region = image[window]
    under = region[mask].mean(axis=0)
    colours = rng.uniform(0.0, 255.0, (8, 3)).astype(np.float32)
    distance = np.linalg.norm(colours - under, axis=1)
    far = np.flatnonzero(distance >= 90.0)
    colour = colours[far[0] if far.size else np.argmax(distance)]
    ys, xs = np.nonzero(mask)
    slope = rng.uniform(-1.0, 1.0, 2) * 30.0 / max(mask.shape)
    shade = (slope[0] * (ys - ys.mean()) + slope[1] * (xs - xs.mean())).astype(np.float32)
    region[ys, xs] = colour + shade[:, None]


# Each shape draw takes (rng, area) and returns (inside(u, v), circumradius).
def _circle(rng, area):
    r2 = area / math.pi
    return (lambda u, v: u * u + v * v <= r2), math.sqrt(r2)


def _ring(rng, area):
    k = rng.uniform(0.45, 0.65)
    outer2 = area / (math.pi * (1 - k * k))
    inner2 = k * k * outer2
    return (lambda u, v: (inner2 <= u * u + v * v) & (u * u + v * v <= outer2)), math.sqrt(outer2)


def _ellipse(rng, area):
    aspect = rng.uniform(1.5, 3.0)
    b = math.sqrt(area / (math.pi * aspect))
    a = aspect * b
    return (lambda u, v: (u / a) ** 2 + (v / b) ** 2 <= 1.0), a


def _rectangle(rng, area):
    aspect = rng.uniform(1.0, 3.0)
    h = math.sqrt(area / aspect)
    w = aspect * h
    return (lambda u, v: (np.abs(u) <= w / 2) & (np.abs(v) <= h / 2)), math.hypot(w, h) / 2


def _triangle(rng, area):
    gaps = rng.uniform(1.6, 2.6, 2)
    angles = rng.uniform(0, 2 * math.pi) + np.array([0.0, gaps[0], gaps[0] + gaps[1]])
    pts = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # counter-clockwise, unit circle
    pts *= math.sqrt(area / _polygon_area(pts))
    edges = np.roll(pts, -1, axis=0) - pts

    def inside(u, v):
        result = np.ones(u.shape, bool)
        for (px, py), (ex, ey) in zip(pts, edges):
            result &= ex * (v - py) - ey * (u - px) >= 0
        return result
    return inside, float(np.linalg.norm(pts, axis=1).max())


def _star(rng, area):
    points = int(rng.integers(5, 7))
    k = rng.uniform(0.38, 0.55)
    step = math.pi / points
    scale = math.sqrt(area / (points * k * math.sin(step)))
    radii = np.where(np.arange(2 * points + 1) % 2 == 0, scale, k * scale)
    angles = np.arange(2 * points + 1) * step
    px, py = radii * np.cos(angles), radii * np.sin(angles)  # vertex 2n repeats vertex 0

    def inside(u, v):
        j = np.minimum((np.mod(np.arctan2(v, u), 2 * math.pi) / step).astype(int), 2 * points - 1)
        ex, ey = px[j + 1] - px[j], py[j + 1] - py[j]
        return ex * (v - py[j]) - ey * (u - px[j]) >= 0  # on the centre's side of edge j
    return inside, scale


def _polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


_SHAPES = {"circle": _circle, "rectangle": _rectangle, "triangle": _triangle,
           "ellipse": _ellipse, "star": _star, "ring": _ring}
