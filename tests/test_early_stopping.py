"""Early stopping: off by default (no callback); with a patience, a tiny run
stops once the monitored metric has not improved for that many validations."""

import csv

import pytest
from pytorch_lightning.callbacks import EarlyStopping

from detector.training import train
from detector.training.early_stopping import early_stopping
from detector.training.run import _instantiate_all
from test_train_entry import _cfg


def test_off_by_default(tmp_path):
    callbacks = _instantiate_all(_cfg(tmp_path).callbacks)
    assert callbacks and not any(isinstance(c, EarlyStopping) for c in callbacks)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="patience must be a positive number.*got 0"):
        early_stopping("val/bbox_AP", patience=0)
    with pytest.raises(ValueError, match="min_delta must be >= 0, got -1"):
        early_stopping("val/bbox_AP", patience=2, min_delta=-1)


def _validations(run_dir) -> int:
    (log,) = run_dir.rglob("metrics.csv")
    with open(log, newline="") as handle:
        return sum(1 for row in csv.DictReader(handle) if row.get("val/segm_AP"))


def test_a_run_stops_after_patience_validations_without_improvement(tmp_path):
    """min_delta 1: no AP can improve on another by more than 1, so after the
    first validation (which improves on nothing) every one counts against the
    patience: with patience 2, training stops at the third of ten epochs."""
    cfg = _cfg(tmp_path, "trainer.max_epochs=10", "test=false", "callbacks.pictures=null",
               "callbacks.early_stopping.patience=2", "callbacks.early_stopping.min_delta=1.0",
               "data.num_train=2", "data.num_val=1")
    train(cfg)
    assert _validations(tmp_path / "run") == 3
