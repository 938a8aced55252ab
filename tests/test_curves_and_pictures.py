"""What a run shows of itself: pictures of its predictions at every validation
(PNG and TensorBoard), and its learning curves drawn from its own logs, at the
end of the run and again from the finished run directory."""

import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from detector.visualization.curves import plot_curves, read_metrics
from detector.training import DetectionModule, SyntheticDataModule
from detector.training.pictures import PredictionPictures, fixed_indices

from conftest import SPEC

PNG = b"\x89PNG\r\n\x1a\n"
BIN = Path(sys.executable).parent


def test_fixed_indices_spread_over_the_set():
    assert fixed_indices(50, 8) == [0, 7, 14, 21, 28, 35, 42, 49]
    assert fixed_indices(3, 8) == [0, 1, 2]
    assert fixed_indices(1, 8) == [0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """4 steps, validation every 2, 3 validation images, CSV and TensorBoard logs."""
    root = tmp_path_factory.mktemp("run")
    data = SyntheticDataModule(str(root / "data"), num_train=4, num_val=3, num_test=0,
                               image_size=(96, 128), batch_size=2)
    module = DetectionModule(dict(SPEC), optimizer="adamw", lr=1e-3, warmup_steps=1)
    loggers = [CSVLogger(root, name="csv"), TensorBoardLogger(root, name="tensorboard")]
    trainer = pl.Trainer(max_steps=4, accelerator="cpu", logger=loggers, log_every_n_steps=1,
                         callbacks=[PredictionPictures(str(root / "pictures"), num_images=8)],
                         enable_checkpointing=False, enable_progress_bar=False,
                         num_sanity_val_steps=1, val_check_interval=2, default_root_dir=root,
                         enable_model_summary=False)
    trainer.fit(module, data)
    return root


def test_a_picture_per_validation(run):
    pictures = sorted((run / "pictures").glob("*.png"))
    assert [p.name for p in pictures] == ["step0000002.png", "step0000004.png"]  # no sanity one
    with Image.open(pictures[0]) as picture:
        width, height = picture.size
    # 3 validation images (fewer than 8), each 96x128: a row of two 128-wide tiles each
    assert (width, height) == (2 * 128 + 3 * 4, 3 * 96 + 4 * 4)
    assert not list((run / "pictures").glob(".*partial"))
    events = next((run / "tensorboard").rglob("events.out.tfevents.*"))
    accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
    accumulator.Reload()
    assert [e.step for e in accumulator.Images("val/predictions")] == [2, 4]


def test_curves_from_the_logs(run, tmp_path):
    series = read_metrics(run)  # the CSV log
    assert {"train/loss", "val/loss", "val/segm_AP"} <= set(series)
    assert len(series["train/loss"]) == 4 and len(series["val/loss"]) == 2
    path = plot_curves(run, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == PNG
    # without the CSV log, TensorBoard's events give the same series
    tensorboard_only = read_metrics(run / "tensorboard")
    assert [round(v, 5) for _, v in tensorboard_only["train/loss"]] == \
        [round(v, 5) for _, v in series["train/loss"]]


def test_curves_again_from_a_finished_run(run):
    (run / "curves.png").unlink(missing_ok=True)
    done = subprocess.run([str(BIN / "rcnn-report"), "--curves", str(run)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert (run / "curves.png").read_bytes()[:8] == PNG
    missing = subprocess.run([str(BIN / "rcnn-report"), "--curves", str(run / "pictures")],
                             capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode == 2 and "no logs to draw from" in missing.stderr
