"""Instance segmentation datasets in COCO format (COCO 2017 or any COCO json),
read through pycocotools, with torchvision.transforms.v2 pipelines."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2


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


class CocoInstances(Dataset):
    """(image, target) pairs from a folder of images and a COCO json.

    Category ids are mapped to contiguous labels 1..K in increasing id order
    (``label_to_category`` maps back); crowd regions are left out of the
    targets (COCOeval handles them); boxes that are degenerate after clipping
    to the image are dropped, with one warning that counts them. Polygons and
    RLE masks both work.

    Targets: ``boxes`` (x1, y1, x2, y2 pixels), ``labels`` (int64), ``masks``
    (uint8 [N, H, W]) and ``image_id``. ``transforms`` is a torchvision v2
    transform applied to (tv_tensors.Image, target); images end as float in [0, 1].
    """

    def __init__(self, images: str | Path, annotations: str | Path,
                 transforms: Callable | None = None, min_box_size: float = 1.0):
        self.images_dir = Path(images)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.images_dir}")
        self.annotations_file = Path(annotations)
        data = _load_json(self.annotations_file)
        _check_annotations(self.annotations_file, data)
        _drop_degenerate_polygons(self.annotations_file, data)
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco.createIndex()
        self.image_ids = sorted(self.coco.imgs)
        self.category_ids = sorted(self.coco.cats)
        self.label_to_category = {i + 1: c for i, c in enumerate(self.category_ids)}
        self.category_to_label = {c: i for i, c in self.label_to_category.items()}
        self.class_names = ["__background__"] + [self.coco.cats[c]["name"]
                                                 for c in self.category_ids]
        self.transforms = transforms
        self.min_box_size = min_box_size
        dropped = sum(1 for ann in data["annotations"]
                      if not ann.get("iscrowd", 0) and self._degenerate(ann))
        if dropped:
            warnings.warn(f"{self.annotations_file}: dropped {dropped} degenerate boxes "
                          f"(smaller than {min_box_size} px after clipping to the image)",
                          stacklevel=2)

    def _clipped(self, ann: dict) -> list[float]:
        info = self.coco.imgs[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        return [max(x, 0.0), max(y, 0.0), min(x + w, info["width"]), min(y + h, info["height"])]

    def _degenerate(self, ann: dict) -> bool:
        x1, y1, x2, y2 = self._clipped(ann)
        return x2 - x1 < self.min_box_size or y2 - y1 < self.min_box_size

    def __len__(self) -> int:
        return len(self.image_ids)

    def read_image(self, image_id: int) -> torch.Tensor:
        path = self.images_dir / self.coco.imgs[image_id]["file_name"]
        try:
            return decode_image(str(path), mode=ImageReadMode.RGB)
        except (RuntimeError, OSError, ValueError) as error:
            raise RuntimeError(f"cannot read image {path} (image id {image_id}): {error}") from error

    def __getitem__(self, key: int | tuple[int, int]):
        """``key`` is an index, or (index, seed): the seed then drives the
        random transforms of this item alone (the global generator is left as
        it was), so an item's augmentation does not depend on what ran before."""
        if isinstance(key, tuple):
            index, seed = key
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self._item(index)
        return self._item(key)

    def _item(self, index: int):
        image_id = self.image_ids[index]
        image = self.read_image(image_id)
        height, width = image.shape[-2:]
        info = self.coco.imgs[image_id]
        if (info.get("height"), info.get("width")) != (height, width):
            raise ValueError(
                f"image {self.images_dir / info['file_name']} is {height}x{width} (h x w), but "
                f"{self.annotations_file} gives {info.get('height')}x{info.get('width')} for "
                f"image id {image_id}: the annotations must be in the image's own frame")
        anns = [a for a in self.coco.imgToAnns.get(image_id, [])
                if not a.get("iscrowd", 0) and not self._degenerate(a)]
        boxes = torch.tensor([self._clipped(a) for a in anns], dtype=torch.float32).reshape(-1, 4)
        masks = torch.zeros((len(anns), height, width), dtype=torch.uint8)
        for i, ann in enumerate(anns):
            if ann.get("segmentation"):
                masks[i] = torch.from_numpy(self.coco.annToMask(ann))
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor([self.category_to_label[a["category_id"]] for a in anns],
                                   dtype=torch.int64),
            "masks": tv_tensors.Mask(masks),
            "image_id": image_id,
        }
        image = tv_tensors.Image(image)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        image = v2.functional.to_dtype(image, torch.float32, scale=True)
        return image.as_subclass(torch.Tensor), {
            "boxes": target["boxes"].as_subclass(torch.Tensor),
            "labels": target["labels"],
            "masks": target["masks"].as_subclass(torch.Tensor),
            "image_id": target["image_id"],
        }


def detection_transforms(train: bool, flip_probability: float = 0.5) -> v2.Transform | None:
    """The data pipeline's augmentation: in training a horizontal flip (boxes
    and masks follow), in evaluation nothing. Images keep their size: the model
    resizes them itself and maps its detections back (docs/geometry.md)."""
    if not train:
        return None
    if not 0.0 <= float(flip_probability) <= 1.0:
        raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability!r}")
    return v2.Compose([v2.RandomHorizontalFlip(float(flip_probability)),
                       v2.SanitizeBoundingBoxes(min_size=1.0)])


def collate(batch):
    """Lists of images and targets (images keep their own sizes)."""
    images, targets = zip(*batch)
    return list(images), list(targets)
