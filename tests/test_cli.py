"""``rcnn-lightning fit|test|predict [--config FILE]`` (LightningCLI) runs the
same LightningModule and DataModule as rcnn-train, and its packaged sample
config (the default) stays the same run as rcnn-train's default."""

import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import ops
from detector.cli.lightning import SAMPLE as PACKAGED
from detector.cli.lightning import run as main
from detector.training import TrainingDiverged
from detector.training.interrupt import TrainingInterrupted

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "cli" / "mask_rcnn_synthetic.yaml"


def test_sample_config_is_train_py_default():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["paths.root_dir=."])
    sample = yaml.safe_load(SAMPLE.read_text())
    module = dict(sample["model"])
    assert module.pop("model") == OmegaConf.to_container(cfg.model, resolve=True)
    assert module == OmegaConf.to_container(cfg.module)
    data = {k: v for k, v in sample["data"]["init_args"].items() if k != "root"}
    hydra_data = OmegaConf.to_container(cfg.data, resolve=True)
    assert data == {k: hydra_data[k] for k in data}
    assert sample["data"]["class_path"] == hydra_data["_target_"]
    for key in ("max_epochs", "check_val_every_n_epoch", "gradient_clip_val"):
        assert sample["trainer"][key] == cfg.trainer[key], key


def test_fit_test_predict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the sample config writes under ./outputs/cli and ./data
    overrides = ["--trainer.max_epochs=1",
            "--trainer.check_val_every_n_epoch=1", "--trainer.enable_progress_bar=false",
            "--data.init_args.num_train=4", "--data.init_args.num_val=2",
            "--data.init_args.image_size=[96,128]", "--data.init_args.num_test=2",
            '--model.model.transform={"_target_": "detector.modeling.transform.ImageTransform", '
            '"min_size": 96, "max_size": 128}',
            "--data.init_args.batch_size=2",
            "--model.warmup_steps=1"]
    tiny = ["--config", str(SAMPLE), *overrides]
    assert Path(str(PACKAGED)).read_text() == SAMPLE.read_text()
    fit = main(["fit", *overrides])  # no --config: the packaged sample is the default
    assert fit.trainer.global_step == 2
    last = tmp_path / "outputs" / "cli" / "checkpoints" / "last.ckpt"
    assert last.is_file()

    # the checkpoint's model is tested, whatever the config's says (here ROI Pool)
    pool = ['--model.model.box_op={"_target_": "ops.roi_pool", "_partial_": true, '
            '"output_size": 7}']
    tested = main(["test", *tiny, *pool, f"--ckpt_path={last}"])
    metrics = tested.model.metrics["test"]
    assert set(metrics) == {"bbox", "segm"}
    assert tested.model.hparams.model["box_op"]["_target_"] == "ops.roi_align"
    assert tested.model.model.roi_heads.box_pooler.op.func is ops.roi_align

    main(["predict", *tiny, f"--ckpt_path={last}"])
    results = json.loads((tmp_path / "outputs" / "cli" / "predictions.json").read_text())
    val_ids = set(tested.datamodule.dataset("test").image_ids)
    assert all(r["image_id"] in val_ids for r in results)
    assert all({"bbox", "score", "category_id", "segmentation"} <= set(r) for r in results)


@pytest.mark.parametrize("raised, code, said", [
    (TrainingDiverged("training diverged at step 3: loss_classifier = nan; the last good "
                      "checkpoint is ckpt/step2.ckpt", 3, "ckpt/step2.ckpt"),
     "error: training diverged at step 3", "step2.ckpt"),
    (TrainingInterrupted(Path("ckpt/last.ckpt"), 5), 130, "resume with ckpt_path=ckpt/last.ckpt"),
    (KeyboardInterrupt(), 130, "interrupted"),
])
def test_diverged_or_interrupted_ends_without_a_traceback(monkeypatch, capsys, raised, code,
                                                          said):
    """rcnn-lightning ends a diverged or interrupted run as rcnn-train does: a
    message and an exit status, not a traceback."""
    import detector.cli.lightning as command

    def stopped():
        raise raised

    monkeypatch.setattr(command, "run", stopped)
    with pytest.raises(SystemExit) as ended:
        command.main()
    if isinstance(code, str):  # SystemExit(message): printed by Python, exit status 1
        assert str(ended.value.code).startswith(code) and said in ended.value.code
    else:
        assert ended.value.code == code and said in capsys.readouterr().err


def test_the_documented_crop_augmentation_parses(tmp_path, monkeypatch):
    """docs/training.md's YAML for `crop` under rcnn-lightning gives the
    transforms rcnn-train's real-image data groups compose."""
    from detector.cli.lightning import CocoDataModule, DetectionModule, DetectorCLI
    from detector.data.augment import Augment, WithInstances
    from torchvision.transforms import v2

    doc = (ROOT / "docs" / "training.md").read_text()
    snippet = doc.split("give the transforms as classes:\n\n```yaml\n")[1].split("```")[0]
    (tmp_path / "crop.yaml").write_text(snippet)
    monkeypatch.chdir(tmp_path)
    cli = DetectorCLI(DetectionModule, CocoDataModule, subclass_mode_data=True, run=False,
                      args=["--config", str(SAMPLE), "--config", str(tmp_path / "crop.yaml")])
    augment = cli.datamodule.augment
    assert isinstance(augment, Augment)
    assert [type(s) for s in augment.steps] == [v2.RandomHorizontalFlip, WithInstances]
    assert isinstance(augment.steps[1].inner, v2.RandomIoUCrop)
