"""trainer=ddp: two CPU processes (gloo) train two steps and evaluate; the
evaluation gathered from both (5 images: one is evaluated by both processes,
and must count once) equals one process's evaluation of the same checkpoint;
and a 2-process run interrupted mid-epoch resumes exactly. Slow (two
processes start, each builds the model): -m slow; CI runs them."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

def _train_py(tmp_path: Path, run: str, *overrides, results: bool = True,
              returncode: int = 0) -> dict | None:
    # the installed command, started outside the checkout: Lightning re-launches it per rank
    command = [str(Path(sys.executable).parent / "rcnn-train"), f"hydra.run.dir={tmp_path / run}",
               f"paths.data_dir={tmp_path / 'data'}", "data.num_train=4", "data.num_val=5",
               "data.image_size=[96,128]", "model.transform.min_size=96",
               "model.transform.max_size=128",
               "data.batch_size=1", "trainer.max_epochs=1",  # 4 images, 2 processes: 2 steps
               "trainer.check_val_every_n_epoch=1", "module.warmup_steps=1",
               "~callbacks.progress", *overrides]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}  # callbacks from tests/
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env=env)
    assert done.returncode == returncode, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((tmp_path / run / "results.json").read_text()) if results else None


@pytest.mark.slow
def test_ddp_evaluation_equals_single_process(tmp_path):
    ddp = _train_py(tmp_path, "ddp", "trainer=ddp", "trainer.accelerator=cpu",
                    "trainer.devices=2")
    assert Path(ddp["checkpoint"]).is_file()
    assert (tmp_path / "ddp" / "train_ddp_process_1.log").is_file()  # a second process ran
    assert ddp["metrics"]["bbox"]["AP50"] > 0  # something to compare, even after 2 steps
    single = _train_py(tmp_path, "single", "train=false", f"ckpt_path={ddp['checkpoint']}")
    for iou_type in ("bbox", "segm"):
        assert single["metrics"][iou_type] == pytest.approx(ddp["metrics"][iou_type], abs=1e-6)


class SignalOnRankZero(pl.Callback):
    """Sends SIGINT to the rank-0 process only, while training step ``step``
    runs (steps count from 1): one process signalled must stop them all."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == self.step - 1 and trainer.global_rank == 0:
            signal.raise_signal(signal.SIGINT)


def _last(tmp_path: Path, run: str) -> dict:
    return torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.mark.slow
def test_ddp_interrupted_mid_epoch_resumes_exactly(tmp_path):
    """2-process gloo DDP, 3 steps per epoch, 2 epochs: stopped by a signal to
    rank 0 during step 2 and resumed, it ends with the uninterrupted run's
    weights, bit for bit (every rank restores its own generators)."""
    common = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "data.num_train=6",
              "trainer.max_epochs=2", "test=false", "data.num_val=2"]
    _train_py(tmp_path, "straight", *common, results=False)
    stopper = ["+callbacks.stop._target_=test_ddp.SignalOnRankZero", "+callbacks.stop.step=2"]
    _train_py(tmp_path, "stopped", *common, *stopper, results=False, returncode=130)
    assert _last(tmp_path, "stopped")["global_step"] == 2
    stopped = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    _train_py(tmp_path, "resumed", *common, f"ckpt_path={stopped}", results=False)
    straight, resumed = _last(tmp_path, "straight"), _last(tmp_path, "resumed")
    assert straight["global_step"] == resumed["global_step"] == 6
    for name, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][name]), name
