"""Writing what ``Trainer.predict`` returns as one COCO results file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter

from .gathering import gather_results


class CocoResultsWriter(BasePredictionWriter):
    """Writes DetectionModule.predict_step's outputs, from every process and
    each image once, to ``path`` (a COCO results json) when prediction ends."""

    def __init__(self, path: str):
        super().__init__(write_interval="epoch")
        self.path = Path(path)

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module, predictions, batch_indices):
        results = [r for batch in predictions for r in batch["results"]]
        image_ids = [i for batch in predictions for i in batch["image_ids"]]
        results, _ = gather_results(results, image_ids)
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text(json.dumps(results))
            os.replace(partial, self.path)
