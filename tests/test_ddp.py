"""trainer=ddp: two CPU processes (gloo) train two steps and evaluate; the
evaluation gathered from both (5 images: one is evaluated by both processes,
and must count once) equals one process's evaluation of the same checkpoint.
Slow (two processes start, each builds the model): -m slow."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

def _train_py(tmp_path: Path, run: str, *overrides) -> dict:
    # the installed command, started outside the checkout: Lightning re-launches it per rank
    command = [str(Path(sys.executable).parent / "rcnn-train"), f"hydra.run.dir={tmp_path / run}",
               f"paths.data_dir={tmp_path / 'data'}", "data.num_train=4", "data.num_val=5",
               "data.image_size=[96,128]", "model.transform.min_size=96",
               "model.transform.max_size=128",
               "data.batch_size=1", "trainer.max_epochs=1",  # 4 images, 2 processes: 2 steps
               "trainer.check_val_every_n_epoch=1", "module.warmup_steps=1",
               "~callbacks.progress", *overrides]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((tmp_path / run / "results.json").read_text())


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
