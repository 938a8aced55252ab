"""train.py's configs compose, and a few-step run on a tiny synthetic set
writes results.json and a checkpoint."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from detector.training import train

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def _cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[
            f"paths.output_dir={tmp_path / 'run'}", f"paths.data_dir={tmp_path / 'data'}",
            f"paths.log_dir={tmp_path / 'logs'}", "data.num_train=4", "data.num_val=2",
            "data.image_size=[96,128]", "data.min_size=96", "data.max_size=128",
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
    assert set(metrics["segm"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
