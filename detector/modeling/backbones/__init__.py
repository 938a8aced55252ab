"""Backbones (image -> named feature maps) and the ROI box heads cut from the same networks."""

from ...weights.files import load_local_weights
from .fpn import ResNetFPN
from .frozen import freeze_batchnorm, freeze_stages, frozen_without_weights
from .resnet import ResNetC4, ResNetC5, ResNetRes5Head
from .vgg import VGG16BoxHead, VGG16Conv5

__all__ = [
    "freeze_batchnorm",
    "freeze_stages",
    "frozen_without_weights",
    "load_local_weights",
    "ResNetC4",
    "ResNetC5",
    "ResNetFPN",
    "ResNetRes5Head",
    "VGG16BoxHead",
    "VGG16Conv5",
]
