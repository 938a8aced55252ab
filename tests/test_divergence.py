"""A diverging run stops at once, saying at which step, which loss terms went
non-finite and which checkpoint is the last good one; no checkpoint with
non-finite weights is ever written."""

import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from detector.loading.spec import build_model
from detector.training import DetectionModule, SyntheticDataModule, TrainingDiverged, train

from conftest import SPEC
from test_train_entry import _cfg


def _data(tmp_path):
    return SyntheticDataModule(str(tmp_path / "data"), num_train=8, num_val=2, num_test=0,
                               image_size=(96, 128), batch_size=2)


def _weights_finite(path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_nan_loss_stops_at_its_step_naming_term_and_last_good_checkpoint(tmp_path):
    model = build_model({**SPEC, "num_classes": 7})
    module = DetectionModule(model, optimizer="adamw", lr=1e-3, warmup_steps=1)
    real = model.forward

    def forward(images, targets=None):
        out = real(images, targets)
        if model.training and module.trainer.global_step >= 2:  # the third step
            out["loss_classifier"] = out["loss_classifier"] * math.nan
        return out

    model.forward = forward
    every_step = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1,
                                 save_top_k=-1, filename="step{step}",
                                 auto_insert_metric_name=False)
    trainer = pl.Trainer(max_steps=4, accelerator="cpu", logger=False, callbacks=[every_step],
                         enable_progress_bar=False, num_sanity_val_steps=0,
                         limit_val_batches=0, default_root_dir=tmp_path)
    with pytest.raises(TrainingDiverged) as caught:
        trainer.fit(module, _data(tmp_path))
    message = str(caught.value)
    assert "training diverged at step 3" in message
    assert "loss_classifier = nan" in message and "loss_box_reg" not in message
    good = tmp_path / "ckpt" / "step2.ckpt"
    assert caught.value.step == 3 and caught.value.checkpoint == str(good)
    assert f"the last good checkpoint is {good}" in message
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step1.ckpt", "step2.ckpt"]
    assert _weights_finite(good)


def test_non_finite_weights_are_never_saved(tmp_path, trained):
    path, module, _ = trained
    good = tmp_path / "last.ckpt"
    good.write_bytes(path.read_bytes())
    with torch.no_grad():
        next(module.model.parameters()).fill_(math.inf)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         max_steps=0, default_root_dir=tmp_path)
    trainer.strategy.connect(module)
    try:
        with pytest.raises(TrainingDiverged, match=r"weights \(backbone\..*\) = nan"):
            trainer.save_checkpoint(good)
    finally:
        module.model.load_state_dict(
            {k[len("model."):]: v for k, v in torch.load(path, weights_only=True)[
                "state_dict"].items()})
    assert good.read_bytes() == path.read_bytes()  # the good file is untouched


def test_absurd_learning_rate_ends_the_run_with_the_error(tmp_path):
    """As a new user would meet it: module.lr=1e6 through the training command."""
    cfg = _cfg(tmp_path, "module.lr=1e6", "module.optimizer=sgd", "data.num_train=8",
               "trainer.max_epochs=3")
    with pytest.raises(SystemExit) as caught:
        train(cfg)
    message = str(caught.value.code)
    assert message.startswith("error: training diverged at step ")
    assert "= nan" in message or "= inf" in message
    assert not (tmp_path / "run" / "results.json").exists()
    for checkpoint in (tmp_path / "run").rglob("*.ckpt"):
        assert _weights_finite(checkpoint), checkpoint
