"""Faster R-CNN / Mask R-CNN models, data, training and evaluation (built on ops)."""

from .builders import fpn_rcnn
from .rcnn import GeneralizedRCNN
from .torchvision_compat import from_torchvision

__all__ = ["GeneralizedRCNN", "fpn_rcnn", "from_torchvision"]
