"""Where models, data and evaluation meet: the LightningModule and DataModule,
the run that train.py starts, and what makes runs resumable."""

from .datamodule import CocoDataModule, synthetic_datamodule
from .interrupt import SaveOnInterrupt, TrainingInterrupted
from .module import DetectionModule, warmup_then_decay
from .run import train
from .sampling import EpochSampler

__all__ = ["CocoDataModule", "DetectionModule", "EpochSampler", "SaveOnInterrupt",
           "TrainingInterrupted", "synthetic_datamodule", "train", "warmup_then_decay"]
