"""Where models, data and evaluation meet: the LightningModule and DataModule,
the run that train.py starts, and what makes runs resumable."""

from .datamodule import CocoDataModule, DetectionDataModule, SyntheticDataModule, VocDataModule
from .divergence import TrainingDiverged
from .interrupt import SaveOnInterrupt, TrainingInterrupted
from .module import DetectionModule, warmup_then_decay
from .photo_data import PhotoDataModule
from .run import train
from .sampling import EpochSampler
from .writer import CocoResultsWriter

__all__ = ["CocoDataModule", "CocoResultsWriter", "DetectionDataModule", "DetectionModule",
           "EpochSampler", "PhotoDataModule", "SaveOnInterrupt", "SyntheticDataModule", "TrainingDiverged",
           "TrainingInterrupted", "VocDataModule", "train", "warmup_then_decay"]
