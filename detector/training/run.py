"""train(cfg): what ``python train.py`` does with a composed Hydra config."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from ..evaluation import format_table
from .module import DetectionModule

log = logging.getLogger(__name__)


def _instantiate_all(group: DictConfig | None) -> list:
    return [hydra.utils.instantiate(c) for c in (group or {}).values() if c is not None]


def train(cfg: DictConfig) -> dict:
    """Trains (cfg.train) and tests (cfg.test) the configured model; writes
    results.json (final test metrics) into cfg.paths.output_dir and returns them."""
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    model.class_names = datamodule.class_names
    module = DetectionModule(model, **cfg.module)
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=_instantiate_all(cfg.get("callbacks")),
        logger=_instantiate_all(cfg.get("logger")) or False)
    ckpt_path = cfg.get("ckpt_path")
    if cfg.get("train", True):
        trainer.fit(module, datamodule, ckpt_path=ckpt_path)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt_path = best or None
    metrics = {}
    if cfg.get("test", True):
        if not cfg.get("train", True) and ckpt_path is None:
            raise ValueError("train=false needs ckpt_path=PATH (the checkpoint to evaluate)")
        trainer.test(module, datamodule, ckpt_path=ckpt_path)
        metrics = module.metrics["test"]
        (output_dir / "results.json").write_text(json.dumps(
            {"metrics": metrics, "checkpoint": str(ckpt_path) if ckpt_path else None}, indent=2))
        print(format_table(metrics))
    return metrics
