"""Datasets: the built-in synthetic shapes (the default, no download) and COCO-format data."""

from .coco import CocoInstances, collate, detection_transforms
from .synthetic import CATEGORIES as SYNTHETIC_CATEGORIES
from .synthetic import make_synthetic_coco

__all__ = ["CocoInstances", "collate", "detection_transforms", "SYNTHETIC_CATEGORIES",
           "make_synthetic_coco"]
