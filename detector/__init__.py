"""Faster R-CNN / Mask R-CNN models, data, training and evaluation (built on ops)."""

from .modeling.builders import c4_rcnn, c5_rcnn, fpn_rcnn, single_level_rcnn, vgg16_rcnn
from .loading.checkpoint import load
from .modeling.rcnn import GeneralizedRCNN
from .loading.torchvision_compat import from_torchvision

__all__ = ["GeneralizedRCNN", "c4_rcnn", "c5_rcnn", "fpn_rcnn", "from_torchvision", "load",
           "single_level_rcnn", "vgg16_rcnn"]
