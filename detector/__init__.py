"""Faster R-CNN / Mask R-CNN models, data, training and evaluation (built on ops)."""

from .builders import c4_rcnn, c5_rcnn, fpn_rcnn, single_level_rcnn, vgg16_rcnn
from .loading import load
from .rcnn import GeneralizedRCNN
from .torchvision_compat import from_torchvision

__all__ = ["GeneralizedRCNN", "c4_rcnn", "c5_rcnn", "fpn_rcnn", "from_torchvision", "load",
           "single_level_rcnn", "vgg16_rcnn"]
