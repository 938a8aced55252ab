"""train.py's runs on a tiny synthetic set: a few steps write results.json and
a checkpoint; a checkpoint evaluates alone (train=false); an interrupted run
saves where it stopped and, resumed, ends exactly as an uninterrupted one."""

import json
import re
import signal
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from detector.training import train

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def _cfg(tmp_path, *overrides, run="run"):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[
            f"paths.output_dir={tmp_path / run}", f"paths.data_dir={tmp_path / 'data'}",
            f"paths.log_dir={tmp_path / 'logs'}", "data.num_train=4", "data.num_val=2",
            "data.image_size=[96,128]", "model.transform.min_size=96",
            "model.transform.max_size=128", "data.num_test=2",
            "data.batch_size=2", "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1",
            "~callbacks.progress", "module.warmup_steps=1", *overrides],
            return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.mark.parametrize("roi_op", ["align", "pool"])
def test_few_step_run_writes_results_and_checkpoint(tmp_path, roi_op):
    metrics = train(_cfg(tmp_path, f"roi_op={roi_op}"))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["metrics"] == metrics
    assert set(metrics) == {"bbox", "segm"}
    assert set(metrics["segm"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl",
                                    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "run" / "curves.png").is_file()  # drawn from the run's CSV log
    assert list((tmp_path / "run" / "pictures").glob("step*.png"))  # one per validation


def test_evaluate_a_checkpoint_alone(tmp_path):
    trained = train(_cfg(tmp_path))
    best = json.loads((tmp_path / "run" / "results.json").read_text())["checkpoint"]
    assert best and Path(best).is_file()
    evaluated = train(_cfg(tmp_path, "train=false", f"ckpt_path={best}", run="eval"))
    assert evaluated == trained
    evaluated_results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert evaluated_results["metrics"] == trained
    # rcnn-evaluate's folder gets the test's files too, with the same per-class rows
    trained_results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert evaluated_results["per_class"] == trained_results["per_class"]
    assert (tmp_path / "eval" / "detections_test.json").is_file()


def test_evaluate_needs_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="train=false needs ckpt_path"):
        train(_cfg(tmp_path, "train=false"))
    with pytest.raises(FileNotFoundError, match="ckpt_path=.*missing.ckpt"):
        train(_cfg(tmp_path, f"ckpt_path={tmp_path / 'missing.ckpt'}"))


class SignalAtStep(pl.Callback):
    """Sends this process SIGINT (as Ctrl+C would) while training step ``step``
    runs (steps count from 1)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == self.step - 1:
            signal.raise_signal(signal.SIGINT)


def _final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def test_resuming_with_another_augmentation_is_refused_evaluating_is_not(tmp_path):
    """A checkpoint keeps its augmentation: resuming training with another (a
    data group's default that changed since, say) is refused, naming both, and
    leaves the checkpoint as it was; evaluating it (never augmented) is not."""
    train(_cfg(tmp_path, "test=false"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(ValueError, match=re.escape(f"ckpt_path={last} is resumed with another "
                       "augmentation (in the checkpoint: Augment([RandomHorizontalFlip(p=0.5)], "
                       "min_size=1.0); now: Augment([RandomHorizontalFlip(p=0.5), WithInstances")):
        train(_cfg(tmp_path, "augment=crop", "trainer.max_epochs=2", f"ckpt_path={last}",
                   run="resumed"))
    assert last.read_bytes() == before
    train(_cfg(tmp_path, "augment=crop", "train=false", f"ckpt_path={last}", run="eval"))
    evaluated = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert evaluated["choices"]["augment"] == "crop" and "augment" not in evaluated


def test_results_name_every_group_option_and_the_augmentation(tmp_path):
    train(_cfg(tmp_path, "augment=photometric", "roi_op=pool"))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {"data": "synthetic", "augment": "photometric", "roi_op": "pool",
            "model": "mask_rcnn"}.items() <= results["choices"].items()
    assert results["augment"].startswith("Augment([RandomHorizontalFlip(p=0.5), ColorJitter(")


@pytest.mark.parametrize("stop_step", [4, 3])  # mid-epoch, and the end of the first epoch
def test_interrupted_run_resumes_exactly(tmp_path, stop_step):
    common = ["data.num_train=6", "trainer.max_epochs=2", "test=false"]
    train(_cfg(tmp_path, *common, run="straight"))
    stopper = ["+callbacks.stop._target_=test_train_entry.SignalAtStep",
               f"+callbacks.stop.step={stop_step}"]
    handler = signal.getsignal(signal.SIGINT)  # Python's, or SIG_IGN in a background job
    with pytest.raises(SystemExit) as stopped:
        train(_cfg(tmp_path, *common, *stopper, run="stopped"))
    assert stopped.value.code == 130
    saved = _final_state(tmp_path / "stopped")
    assert saved["global_step"] == stop_step
    assert signal.getsignal(signal.SIGINT) is handler  # put back as it was
    stopped_at = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # tested too, this time (common[:-1]: without test=false): its results.json
        train(_cfg(tmp_path, *common[:-1], f"ckpt_path={stopped_at}", run="resumed"))
    # Lightning's "resuming ... before the epoch ended" is not said: the data resumes exactly
    assert not [w for w in caught if "before the epoch ended" in str(w.message)]
    straight, resumed = _final_state(tmp_path / "straight"), _final_state(tmp_path / "resumed")
    # the wall time counts on from the stopped process's (detector.training.clock)
    results = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert results["resumed_at_step"] == stop_step
    assert (0 < saved["run_wall_time_s"] < resumed["run_wall_time_s"]
            and round(resumed["run_wall_time_s"], 1) <= results["wall_time_s"])
    assert resumed["global_step"] == straight["global_step"] == 6
    assert straight["state_dict"].keys() == resumed["state_dict"].keys()
    for name, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][name]), name
    for a, b in zip(straight["optimizer_states"][0]["state"].values(),
                    resumed["optimizer_states"][0]["state"].values(), strict=True):
        assert a.keys() == b.keys()
        for name in a:  # AdamW: step, exp_avg, exp_avg_sq
            assert torch.equal(torch.as_tensor(a[name]), torch.as_tensor(b[name])), name
    assert straight["lr_schedulers"] == resumed["lr_schedulers"]


def test_num_classes_must_match_the_data(tmp_path):
    with pytest.raises(ValueError, match="num_classes=3, but the data has 6 categories"):
        train(_cfg(tmp_path, "model.num_classes=3"))
