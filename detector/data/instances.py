"""What every instance dataset here shares (COCO json, Pascal VOC folders):
the ground truth as a pycocotools COCO object, the label mapping, and the
(image, target) items made from it."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from .categories import Categories
from .image_files import read_rgb


class MaskCounts(NamedTuple):
    """How many of a dataset's training instances (not crowd, not degenerate)
    have a segmentation, and the file that says so."""

    with_masks: int
    instances: int
    source: Path


def has_segmentation(ann: dict) -> bool:
    """Whether an annotation has a mask: box-only exports leave
    ``segmentation`` out, or write an empty list."""
    return bool(ann.get("segmentation"))


class InstanceDataset(Dataset):
    """(image, target) pairs from a COCO-format ground truth.

    A subclass builds the ground truth dict (COCO's images / annotations /
    categories), calls ``_index`` with it, sets ``images_dir`` (where the
    images' ``file_name`` are) and says where an image's recorded size comes
    from (``_size_source``, for the error when the file's size differs).

    Category ids are mapped to contiguous labels 1..K: the model's, when
    ``categories`` are given (every split of a dataset maps with the training
    split's categories, or a checkpoint's: a split may list a subset of them,
    in any order, and is refused where it contradicts them; see
    Categories.check), else this split's own in increasing id order
    (``label_to_category`` maps back); crowd regions are left out of the
    targets (COCOeval handles them); boxes that are degenerate after clipping
    to the image are dropped, with one warning that counts them.

    Targets: ``boxes`` (x1, y1, x2, y2 pixels), ``labels`` (int64), ``masks``
    (uint8 [N, H, W]; zeros where an annotation has no segmentation),
    ``has_mask`` (bool [N]: which instances have one; the mask loss leaves
    the others out) and ``image_id``. ``mask_counts`` counts the instances
    with a mask; ``has_masks`` is whether there is any. ``transforms`` is a
    torchvision v2 transform applied to (tv_tensors.Image, target); images
    end as float in [0, 1].
    """

    def _index(self, data: dict, source: Path, transforms: Callable | None,
               min_box_size: float, categories: Categories | None = None) -> None:
        """Indexes ``data`` (read from ``source``, named in the warning), with
        labels from ``categories`` when given (else its own)."""
        if categories is not None:
            categories.check(data["categories"], data["annotations"], str(source))
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco.createIndex()
        self.image_ids = sorted(self.coco.imgs)
        if categories is None:
            ids = sorted(self.coco.cats)
            categories = Categories(tuple(ids), tuple(self.coco.cats[c]["name"] for c in ids),
                                    str(source))
        self.categories = categories
        self.category_ids = list(categories.ids)
        self.label_to_category = {i + 1: c for i, c in enumerate(self.category_ids)}
        self.category_to_label = {c: i for i, c in self.label_to_category.items()}
        self.class_names = ["__background__", *categories.names]
        self.transforms = transforms
        self.min_box_size = min_box_size
        instances = [ann for ann in data["annotations"] if not ann.get("iscrowd", 0)]
        kept = [ann for ann in instances if not self._degenerate(ann)]
        dropped = len(instances) - len(kept)
        self.mask_counts = MaskCounts(sum(map(has_segmentation, kept)), len(kept), Path(source))
        if dropped:
            warnings.warn(f"{source}: dropped {dropped} degenerate boxes "
                          f"(smaller than {min_box_size} px after clipping to the image)",
                          stacklevel=3)

    @property
    def has_masks(self) -> bool:
        """Whether any training instance has a mask (box-only data has none)."""
        return self.mask_counts.with_masks > 0

    def _size_source(self, image_id: int) -> str:
        """Where the ground truth's size of ``image_id`` was read, as
        "FILE gives" / "FILE says"; subclasses name their file."""
        raise NotImplementedError

    def read_image(self, image_id: int) -> torch.Tensor:
        """uint8 [3, H, W] RGB as viewers show it (EXIF orientation applied:
        detector.data.image_files), checked to be the size the ground truth
        records (annotations must be in that upright frame)."""
        info = self.coco.imgs[image_id]
        path = self.images_dir / info["file_name"]
        try:
            image = read_rgb(path)
        except (RuntimeError, OSError, ValueError) as error:
            raise RuntimeError(f"cannot read image {path} (image id {image_id}): {error}") from error
        height, width = image.shape[-2:]
        if (info.get("height"), info.get("width")) != (height, width):
            raise ValueError(
                f"image {path} is {height}x{width} (h x w) but {self._size_source(image_id)} "
                f"{info.get('height')}x{info.get('width')} for image id {image_id}: the "
                "annotations must be in the image's own frame (upright, as viewers show it: "
                "EXIF orientation applied)")
        return image

    def _clipped(self, ann: dict) -> list[float]:
        info = self.coco.imgs[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        return [max(x, 0.0), max(y, 0.0), min(x + w, info["width"]), min(y + h, info["height"])]

    def _degenerate(self, ann: dict) -> bool:
        x1, y1, x2, y2 = self._clipped(ann)
        return x2 - x1 < self.min_box_size or y2 - y1 < self.min_box_size

    def _instances(self, image_id: int) -> list[dict]:
        """The annotations of ``image_id`` that train: not crowd, not degenerate."""
        return [a for a in self.coco.imgToAnns.get(image_id, [])
                if not a.get("iscrowd", 0) and not self._degenerate(a)]

    def drop_empty_images(self) -> int:
        """Leaves out the images with no instance to train on (no annotation,
        or only crowd or degenerate ones; by default they train as background
        images, negatives only); returns how many were left out. For training
        splits: evaluation scores every image, false positives included."""
        kept = [i for i in self.image_ids if self._instances(i)]
        dropped = len(self.image_ids) - len(kept)
        self.image_ids = kept
        return dropped

    def aspect_ratios(self) -> list[float]:
        """Width / height of each item, from the ground truth (no image read)."""
        return [self.coco.imgs[i]["width"] / self.coco.imgs[i]["height"]
                for i in self.image_ids]

    def image_labels(self) -> list[set[int]]:
        """The labels (1..K) present in each item: what repeat-factor sampling
        counts."""
        return [{self.category_to_label[a["category_id"]] for a in self._instances(i)}
                for i in self.image_ids]

    def __len__(self) -> int:
        return len(self.image_ids)

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
        anns = self._instances(image_id)
        boxes = torch.tensor([self._clipped(a) for a in anns], dtype=torch.float32).reshape(-1, 4)
        masks = torch.zeros((len(anns), height, width), dtype=torch.uint8)
        has_mask = torch.tensor([has_segmentation(a) for a in anns], dtype=torch.bool)
        for i, ann in enumerate(anns):
            if has_mask[i]:
                masks[i] = torch.from_numpy(self.coco.annToMask(ann))
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor([self.category_to_label[a["category_id"]] for a in anns],
                                   dtype=torch.int64),
            "masks": tv_tensors.Mask(masks),
            "has_mask": has_mask,
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
            "has_mask": target["has_mask"],
            "image_id": target["image_id"],
        }
