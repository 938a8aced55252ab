"""Where models, data and evaluation meet: the LightningModule."""

from .datamodule import CocoDataModule, synthetic_datamodule
from .run import train
from .module import DetectionModule, warmup_then_decay

__all__ = ["CocoDataModule", "DetectionModule", "synthetic_datamodule", "train",
           "warmup_then_decay"]
