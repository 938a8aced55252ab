"""The console commands: each is installed and answers --help with what can be
set; a --config-dir folder extends the groups and is refused (not silently
ignored) where it would shadow a packaged config; rcnn-evaluate is rcnn-train
with training off; progress in a file is plain lines."""

import io
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from pytorch_lightning.callbacks import TQDMProgressBar

from detector.training import DetectionModule, SyntheticDataModule
from detector.training.progress import LineProgress, progress

from conftest import SPEC

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*args, cwd, timeout=300):
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


HELP = {
    "rcnn-train": ["== Configuration groups ==", "roi_op: align", "rcnn-train roi_op=pool"],
    "rcnn-evaluate": ["== Configuration groups ==", "rcnn-evaluate ckpt_path=", "train: false"],
    "rcnn-predict": ["input: ???", "ckpt_path: null", "inference:"],
    "rcnn-report": ["usage: rcnn-report", "--baseline"],
    "rcnn-explain": ["usage: rcnn-explain", "--image-size H W"],
    "rcnn-lightning": ["usage: rcnn-lightning", "fit"],
    "rcnn-export": ["output: ???", "format: null", "rcnn-predict exported=FILE"],
}


@pytest.mark.slow  # CI's wheel smoke runs every command outside the checkout
def test_every_command_answers_help(tmp_path):
    running = {name: subprocess.Popen([str(BIN / name), "--help"], cwd=tmp_path, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for name in HELP}
    for name, proc in running.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {err[-2000:]}"
        for expected in HELP[name]:
            assert expected in out, f"{name} --help lacks {expected!r}"
    assert list(tmp_path.iterdir()) == [], "--help wrote files"


def test_config_dir_extends_and_refuses_to_be_shadowed(tmp_path):
    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "tiny.yaml").write_text(
        "# @package _global_\ndefaults:\n  - synthetic\ndata:\n  num_train: 7\n")
    done = _run("rcnn-train", "--config-dir", str(mine), "data=tiny", "--cfg", "job",
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "num_train: 7" in done.stdout and "SyntheticDataModule" in done.stdout

    (mine / "roi_op").mkdir()
    (mine / "roi_op" / "align.yaml").write_text("box_op: null\n")
    done = _run("rcnn-train", f"--config-dir={mine}", "--cfg", "job", cwd=tmp_path)
    assert done.returncode == 1
    assert "roi_op/align.yaml has the name of a packaged config" in done.stderr
    assert "roi_op/my_align.yaml" in done.stderr


def test_evaluate_is_train_without_training():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        evaluate = compose("evaluate", overrides=["ckpt_path=x.ckpt", "data=coco",
                                                  "roi_op=pool"])
        train = compose("train", overrides=["ckpt_path=x.ckpt", "data=coco", "roi_op=pool",
                                            "train=false"])
    assert evaluate == train
    assert evaluate.data._target_.endswith("CocoDataModule")


def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_file():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(progress(stream=Terminal()), TQDMProgressBar)
    assert isinstance(progress(stream=io.StringIO()), LineProgress)
    with pytest.raises(ValueError, match="every_s must be positive"):
        LineProgress(0)


def test_line_progress_writes_plain_lines(tmp_path, capsys):
    data = SyntheticDataModule(str(tmp_path / "data"), num_train=4, num_val=2, num_test=0,
                               image_size=(96, 128), batch_size=2)
    module = DetectionModule({**SPEC}, optimizer="adamw", lr=1e-3, warmup_steps=1)
    trainer = pl.Trainer(max_steps=4, accelerator="cpu", logger=False,
                         enable_checkpointing=False, num_sanity_val_steps=0,
                         val_check_interval=2, callbacks=[LineProgress(every_s=3600)],
                         default_root_dir=tmp_path, enable_model_summary=False)
    trainer.fit(module, data)
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = [line for line in out.splitlines() if line.startswith(("step ", "validation"))]
    # the first and the last step, whatever every_s says, and each validation
    assert [line.split()[:2] for line in lines if line.startswith("step")] == [
        ["step", "1/4"], ["step", "4/4"]]
    assert sum(line.startswith("validation at step") for line in lines) == 2
    assert "loss=" in lines[0] and "min left" in lines[0]
    validation = next(line for line in lines if line.startswith("validation"))
    assert "val/loss=" in validation and "val/segm_AP=" in validation
