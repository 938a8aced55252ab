"""Instance segmentation datasets in COCO format (COCO 2017 or any COCO json),
read through pycocotools, with torchvision.transforms.v2 pipelines."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

from .augment import preset
from .categories import Categories
from .instances import InstanceDataset


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{path}: the top-level '{key}' list is missing")
    return data


def _check_annotations(path: Path, data: dict) -> None:
    images = {image.get("id") for image in data["images"]}
    categories = {c.get("id") for c in data["categories"]}
    for ann in data["annotations"]:
        where = f"{path}: annotation id {ann.get('id')!r}"
        if ann.get("image_id") not in images:
            raise ValueError(f"{where} refers to image_id {ann.get('image_id')!r}, not in 'images'")
        if ann.get("category_id") not in categories:
            raise ValueError(f"{where} has category_id {ann.get('category_id')!r}, not in "
                             "'categories'")
        bbox = ann.get("bbox")
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) for v in bbox)):
            raise ValueError(f"{where} has a malformed bbox {bbox!r} (expected [x, y, w, h])")
        segmentation = ann.get("segmentation")
        if segmentation is not None and not isinstance(segmentation, (list, dict)):
            raise ValueError(f"{where} has a malformed segmentation (polygon list or RLE dict "
                             "expected)")


def _valid_polygon(polygon) -> bool:
    return (isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
            and all(isinstance(v, (int, float)) for v in polygon))


def _drop_degenerate_polygons(path: Path, data: dict) -> None:
    """Polygons with fewer than three points (or odd or non-numeric coordinate
    lists) are removed; an annotation left with no polygon is removed entirely,
    from the training targets and from the ground truth alike (detectron2 does
    the same): pycocotools cannot rasterize it. One warning counts them."""
    polygons = annotations = 0
    kept = []
    for ann in data["annotations"]:
        segmentation = ann.get("segmentation")
        if isinstance(segmentation, list):
            valid = [p for p in segmentation if _valid_polygon(p)]
            polygons += len(segmentation) - len(valid)
            if not valid:
                annotations += 1
                continue
            if len(valid) < len(segmentation):
                ann = {**ann, "segmentation": valid}
        kept.append(ann)
    if polygons:
        warnings.warn(f"{path}: dropped {polygons} segmentation polygons with fewer than 3 "
                      f"points (or malformed), and {annotations} annotations left without a "
                      "polygon", stacklevel=3)
        data["annotations"] = kept


class CocoInstances(InstanceDataset):
    """(image, target) pairs from a folder of images and a COCO json (see
    InstanceDataset for the labels, the targets and ``transforms``). Polygons
    and RLE masks both work; polygons of fewer than three points are dropped
    (see _drop_degenerate_polygons); an image whose size differs from its
    entry in the json is an error that names both. ``categories``: the
    model's (labels follow them; see InstanceDataset)."""

    def __init__(self, images: str | Path, annotations: str | Path,
                 transforms: Callable | None = None, min_box_size: float = 1.0,
                 categories: Categories | None = None):
        self.images_dir = Path(images)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.images_dir}")
        self.annotations_file = Path(annotations)
        data = _load_json(self.annotations_file)
        _check_annotations(self.annotations_file, data)
        _drop_degenerate_polygons(self.annotations_file, data)
        self._index(data, self.annotations_file, transforms, min_box_size, categories)

    def _size_source(self, image_id: int) -> str:
        return f"{self.annotations_file} gives"


def detection_transforms(train: bool, flip_probability: float = 0.5,
                         augment: Callable | None = None) -> Callable | None:
    """The data pipeline's augmentation: in training ``augment`` (a transform
    of detector.data.augment, e.g. a preset of configs/augment/), by default
    a horizontal flip (boxes, masks and the per-instance fields follow); in
    evaluation nothing. The model resizes the images itself and maps its
    detections back (docs/geometry.md)."""
    if not train:
        return None
    if augment is not None:
        if not callable(augment):
            raise TypeError(f"augment must be a transform (detector.data.augment.Augment), "
                            f"got {augment!r}")
        return augment
    return preset("flip", flip_probability)


def collate(batch):
    """Lists of images and targets (images keep their own sizes)."""
    images, targets = zip(*batch)
    return list(images), list(targets)
