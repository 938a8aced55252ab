"""Detection and instance segmentation datasets in the Pascal VOC folder layout
(VOC2007 / VOC2012, or a custom dataset laid out the same way), with the
interface of CocoInstances: the ground truth is a pycocotools COCO object built
in memory from the XMLs, so evaluation treats both alike."""

from __future__ import annotations

import math
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

from .categories import Categories
from .instances import InstanceDataset

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")

_BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


def _read_ids(path: Path) -> list[str]:
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{path} lists no images")
    seen = set()
    for name in ids:
        if name in seen:
            raise ValueError(f"{path} lists image {name!r} twice")
        seen.add(name)
    return ids


def _missing_masks(root: Path, ids: list[str]) -> list[Path]:
    pngs = (root / "SegmentationObject" / f"{i}.png" for i in ids)
    return [png for png in pngs if not png.is_file()]


def _split(root: Path, split: str, masks: bool | str) -> tuple[Path, list[str], bool]:
    """The split list, its ids and whether masks are used (see VocInstances)."""
    if not (masks == "auto" or isinstance(masks, bool)):
        raise ValueError(f"masks must be 'auto', True or False, got {masks!r}")
    main = root / "ImageSets" / "Main" / f"{split}.txt"
    segmentation = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    with_masks = {"auto": [segmentation], True: [segmentation, main], False: []}[masks]
    for path in (p for p in with_masks if p.is_file()):
        ids = _read_ids(path)
        missing = _missing_masks(root, ids)
        if not missing:
            if path == segmentation and main.is_file():
                _warn_if_fewer(segmentation, ids, main)
            return path, ids, True
        if masks is True:
            raise FileNotFoundError(f"masks=True but instance mask {missing[0]} is missing "
                                    f"({len(missing)} of the {len(ids)} images of {path} "
                                    "have none)")
        break  # "auto": boxes only, from the Main list
    for path in (main, segmentation):
        if path.is_file():
            return path, _read_ids(path), False
    raise FileNotFoundError(f"split list '{split}' not found: neither {segmentation} "
                            f"nor {main} exists")


def _warn_if_fewer(segmentation: Path, ids: list[str], main: Path) -> None:
    """Masks come from the Segmentation list: says so when it is the smaller
    one (VOC2007 trainval: 422 images of the Main list's 5,011)."""
    total = len(_read_ids(main))
    if len(ids) < total:
        warnings.warn(f"{segmentation} lists {len(ids)} images and {main} {total}: instance "
                      f"masks exist for the Segmentation list, so {len(ids)} images are read "
                      f"(masks=False reads all {total}, boxes only)", stacklevel=4)


def _text(node: ET.Element, tag: str) -> str | None:
    child = node.find(tag)
    return None if child is None or child.text is None else child.text.strip()


def _number(node: ET.Element, tag: str, where: str) -> float:
    text = _text(node, tag)
    if text is None:
        raise ValueError(f"{where} has no <{tag}>")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{where} has a non-numeric <{tag}> {text!r}")
    return value


def _parse_xml(path: Path, class_names: Sequence[str]) -> dict:
    """{"width", "height", "objects": [{"label", "difficult", "box"}]}, the box
    converted from VOC's 1-based inclusive pixels to (x1, y1, x2, y2)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise ValueError(f"{path} is not valid XML: {error}") from error
    size = root.find("size")
    if size is None:
        raise ValueError(f"{path} has no <size>")
    width, height = (_number(size, tag, f"{path}: <size>") for tag in ("width", "height"))
    if width <= 0 or height <= 0 or not width.is_integer() or not height.is_integer():
        raise ValueError(f"{path}: <size> must be positive whole pixels, got width "
                         f"{width:g}, height {height:g}")
    objects = []
    for i, obj in enumerate(root.findall("object"), start=1):
        where = f"{path}: object {i}"
        name = _text(obj, "name")
        if name is None:
            raise ValueError(f"{where} has no <name>")
        if name not in class_names:
            raise ValueError(f"{where} has unknown class {name!r}; known classes: "
                             f"{', '.join(class_names)}")
        difficult = _text(obj, "difficult") or "0"
        if difficult not in ("0", "1"):
            raise ValueError(f"{where} has <difficult> {difficult!r} (expected 0 or 1)")
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"{where} ({name}) has no <bndbox>")
        xmin, ymin, xmax, ymax = (_number(box, tag, f"{where} ({name}) <bndbox>")
                                  for tag in _BOX_FIELDS)
        objects.append({"label": class_names.index(name) + 1, "difficult": difficult == "1",
                        "box": [xmin - 1.0, ymin - 1.0, xmax, ymax]})
    return {"width": int(width), "height": int(height), "objects": objects}


def _instance_rles(png: Path, xml: Path, count: int, size: tuple[int, int]) -> list[dict]:
    """One RLE per XML object from a SegmentationObject png (value k: object k,
    0 background, 255 void)."""
    try:
        with Image.open(png) as image:
            mode, indices = image.mode, np.array(image)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read instance mask {png}: {error}") from error
    if indices.ndim != 2:
        raise ValueError(f"{png}: expected a palette (mode 'P') or grayscale png of instance "
                         f"indices, got mode {mode!r}")
    if indices.shape != size:
        raise ValueError(f"{png} is {indices.shape[0]}x{indices.shape[1]} (h x w) but {xml} "
                         f"says {size[0]}x{size[1]}")
    found = sorted(set(np.unique(indices).tolist()) - {0, 255})
    if found != list(range(1, count + 1)):
        raise ValueError(f"{png} has {len(found)} instances (values {found}) but {xml} has "
                         f"{count} objects (expected values 1..{count})")
    if count == 0:
        return []
    binary = indices[:, :, None] == np.arange(1, count + 1, dtype=indices.dtype)
    rles = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")  # json-serializable, like COCO files
    return rles


class VocInstances(InstanceDataset):
    """(image, target) pairs from a VOC year folder (``root``, e.g.
    ``VOCdevkit/VOC2007``): ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``,
    ``ImageSets/{Main,Segmentation}/<split>.txt`` and, for masks,
    ``SegmentationObject/<id>.png`` (palette png: value k is the k-th
    <object> of the XML, 0 background, 255 the void boundary, left out of the
    masks).

    ``masks``: "auto" uses masks when ImageSets/Segmentation/<split>.txt
    exists and every image it lists has a SegmentationObject png, and then
    reads that list; otherwise it reads boxes only (masks all zero) from
    ImageSets/Main/<split>.txt. True demands masks (from the Segmentation
    list, else the Main one); False reads boxes only, from the Main list
    (else the Segmentation one): what a box-only model wants, every image.
    Masks read from a Segmentation list shorter than the Main list are a
    warning that gives both counts. ``has_masks`` says which it is.

    VOC boxes are 1-based inclusive pixels; as detectron2 does, they become
    (x1, y1, x2, y2) = (xmin - 1, ymin - 1, xmax, ymax) in the project's
    continuous-pixel convention. Objects marked ``difficult`` are left out of
    the targets and enter the COCO ground truth as ``iscrowd=1``, so COCOeval
    ignores detections on them, as VOC's own evaluation does (COCOeval's crowd
    overlap is intersection over the detection's area, and a crowd region may
    absorb several detections; detector.evaluation.voc follows VOC exactly).

    The rest is InstanceDataset's: ``image_ids`` are the positions 0..N-1 in the
    split list (``file_names`` holds the VOC ids), labels 1..K follow
    ``class_names`` (by default the ``categories``' names when given, else the
    20 VOC classes in their standard order),
    ``coco`` is the ground truth, degenerate boxes are dropped with one
    warning, and ``dataset[index, seed]`` seeds the transforms of that item.
    """

    def __init__(self, root: str | Path, split: str = "trainval",
                 transforms: Callable | None = None, class_names: Sequence[str] | None = None,
                 min_box_size: float = 1.0, masks: bool | str = "auto",
                 categories: Categories | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"VOC folder not found: {self.root}")
        if class_names is None:
            class_names = VOC_CLASSES if categories is None else categories.names
        names = list(class_names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"class_names must be distinct and non-empty, got {names}")
        self.images_dir = self.root / "JPEGImages"
        self.split_file, self.file_names, self._reads_masks = _split(self.root, split, masks)
        self._index(self._ground_truth(names), self.split_file, transforms, min_box_size,
                    categories)

    def _ground_truth(self, class_names: list[str]) -> dict:
        """The COCO dict of the split: checks that every listed XML and image
        exists and reads the XMLs (and instance masks)."""
        images, annotations = [], []
        for image_id, name in enumerate(self.file_names):
            xml = self.root / "Annotations" / f"{name}.xml"
            if not xml.is_file():
                raise FileNotFoundError(f"annotation file not found: {xml} "
                                        f"(listed in {self.split_file})")
            if not (self.images_dir / f"{name}.jpg").is_file():
                raise FileNotFoundError(f"image not found: {self.images_dir / f'{name}.jpg'} "
                                        f"(listed in {self.split_file})")
            record = _parse_xml(xml, class_names)
            objects = record["objects"]
            images.append({"id": image_id, "file_name": f"{name}.jpg",
                           "width": record["width"], "height": record["height"]})
            rles = None
            if self._reads_masks:
                rles = _instance_rles(self.root / "SegmentationObject" / f"{name}.png", xml,
                                      len(objects), (record["height"], record["width"]))
            for i, obj in enumerate(objects):
                x1, y1, x2, y2 = obj["box"]
                ann = {"id": len(annotations) + 1, "image_id": image_id,
                       "category_id": obj["label"], "bbox": [x1, y1, x2 - x1, y2 - y1],
                       "area": (x2 - x1) * (y2 - y1), "iscrowd": int(obj["difficult"])}
                if rles is not None:
                    ann["segmentation"] = rles[i]
                    ann["area"] = float(mask_utils.area(rles[i]))
                annotations.append(ann)
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(class_names)]
        return {"images": images, "annotations": annotations, "categories": categories}

    def _size_source(self, image_id: int) -> str:
        stem = Path(self.coco.imgs[image_id]["file_name"]).stem
        return f"{self.root / 'Annotations' / (stem + '.xml')} says"
