"""Where models, data and evaluation meet: the LightningModule."""

from .datamodule import CocoDataModule
from .module import DetectionModule, warmup_then_decay

__all__ = ["CocoDataModule", "DetectionModule", "warmup_then_decay"]
