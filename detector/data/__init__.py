"""Datasets: the built-in synthetic shapes (the default, no download), COCO-format data
and Pascal VOC folders."""

from .coco import CocoInstances, collate, detection_transforms
from .builders.synthetic import CATEGORIES as SYNTHETIC_CATEGORIES
from .builders.synthetic import make_synthetic_coco
from .voc import VOC_CLASSES, VocInstances

__all__ = ["CocoInstances", "collate", "detection_transforms", "SYNTHETIC_CATEGORIES",
           "make_synthetic_coco", "VOC_CLASSES", "VocInstances"]
