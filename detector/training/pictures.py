"""Pictures of what the model predicts, at every validation: the same few
validation images each time, the ground truth beside the predictions (masks,
boxes, class names, scores), saved as PNGs in the run directory and logged to
TensorBoard when it is among the loggers."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torchvision.io import write_png

from ..visualization.drawing import draw, fit_within, grid, to_uint8

log = logging.getLogger(__name__)


def fixed_indices(size: int, count: int) -> list[int]:
    """``count`` indices spread evenly over a dataset of ``size`` items."""
    count = min(count, size)
    return [round(i * (size - 1) / max(count - 1, 1)) for i in range(count)] if count else []


class PredictionPictures(pl.Callback):
    """At the end of every validation (not the sanity check), draws
    ``num_images`` fixed validation images: one row each, the ground truth
    on the left and the detections scoring at least ``score_threshold`` on the
    right, every picture fitted within ``max_side`` pixels. Written (whole or
    not at all) to ``dirpath/step{global_step:07d}.png``, and to TensorBoard as
    ``val/predictions``. Only the first process draws."""

    def __init__(self, dirpath: str, num_images: int = 8, score_threshold: float = 0.5,
                 max_side: int = 400):
        if num_images < 1:
            raise ValueError(f"num_images must be at least 1, got {num_images}")
        self.dirpath = Path(dirpath)
        self.num_images, self.score_threshold, self.max_side = num_images, score_threshold, max_side

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule):
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        picture = self.draw(trainer, pl_module)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"step{trainer.global_step:07d}.png"
        partial = path.with_name(f".{path.name}.partial")
        write_png(picture, str(partial))
        os.replace(partial, path)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/predictions", picture, trainer.global_step)

    @torch.no_grad()
    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> torch.Tensor:
        model = pl_module.model
        dataset = trainer.datamodule.dataset("val")
        names = model.class_names
        rows = []
        was_training = model.training
        model.eval()
        try:
            for index in fixed_indices(len(dataset), self.num_images):
                image, target = dataset[index]
                detections = model([image.to(pl_module.device)])[0]
                picture = to_uint8(image)
                truth = draw(picture, target, names, mask_threshold=0.5)
                predicted = draw(picture, detections, names, self.score_threshold,
                                 model.mask_threshold)
                rows.append([fit_within(truth, self.max_side),
                             fit_within(predicted, self.max_side)])
        finally:
            model.train(was_training)
        return grid(rows)
