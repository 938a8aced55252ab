"""Every experiment is the recipe it says it is: its effective optimizer,
learning rate and schedule, read off the composed config through the module
that trains with it (not off the YAML text)."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from detector.training import DetectionModule

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
LR_RANGES = {"sgd": (1e-4, 0.1), "adamw": (1e-5, 1e-2)}  # what trains a detector


def _compose(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={tmp_path}", *overrides])


class _Trainer(SimpleNamespace):
    """What configure_optimizers reads off a Trainer."""


def _optimizer_and_schedule(cfg, images_per_step: int | None = None):
    module = DetectionModule(torch.nn.Linear(2, 2),
                             **OmegaConf.to_container(cfg.module, resolve=True))
    batch = cfg.data.batch_size
    devices = cfg.trainer.devices if isinstance(cfg.trainer.devices, int) else 1
    if images_per_step is not None:
        devices, batch = 1, images_per_step
    max_steps = cfg.trainer.max_steps
    total = max_steps if max_steps and max_steps > 0 else 1000
    trainer = _Trainer(world_size=devices, accumulate_grad_batches=1,
                       datamodule=SimpleNamespace(batch_size=batch),
                       estimated_stepping_batches=total)
    module.trainer = trainer  # noqa: the minimal stand-in
    return module.configure_optimizers(), total


@pytest.fixture(autouse=True)
def _no_trainer_property(monkeypatch):
    # LightningModule.trainer is a property bound to a real Trainer; let the stand-in in
    monkeypatch.setattr(DetectionModule, "trainer", None, raising=False)


def _lrs(config, steps):
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    base = optimizer.param_groups[0]["initial_lr"]
    return {s: base * scheduler.lr_lambdas[0](s) for s in steps}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_has_a_sane_optimizer_and_schedule(tmp_path, experiment):
    cfg = _compose(tmp_path, f"experiment={experiment}")
    config, total = _optimizer_and_schedule(cfg)
    optimizer = config["optimizer"]
    name = cfg.module.optimizer
    assert type(optimizer).__name__.lower() == name
    low, high = LR_RANGES[name]
    assert low <= optimizer.param_groups[0]["initial_lr"] <= high, (experiment, name, cfg.module.lr)
    assert cfg.module.warmup_steps < total
    if cfg.module.decay == "step" and cfg.module.milestone_steps is not None:
        assert all(0 < m < total for m in cfg.module.milestone_steps)


def test_coco_1x_is_detectrons_1x(tmp_path):
    cfg = _compose(tmp_path, "experiment=coco_r50_fpn_1x")
    assert cfg.trainer.devices * cfg.data.batch_size == 16 and cfg.trainer.max_steps == 90000
    assert (cfg.model.transform.min_size, cfg.model.transform.max_size) == (800, 1333)
    assert cfg.data.flip_probability == 0.5
    config, _ = _optimizer_and_schedule(cfg)
    optimizer = config["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["initial_lr"], group["momentum"], group["weight_decay"]) == (0.02, 0.9, 1e-4)
    assert optimizer.param_groups[1]["weight_decay"] == 0.0  # norms and biases
    lrs = _lrs(config, [0, 500, 1000, 59999, 60000, 79999, 80000, 89999])
    assert lrs[0] == pytest.approx(0.02 * 0.001)
    assert lrs[500] == pytest.approx(0.02 * (0.001 * 0.5 + 0.5))
    assert lrs[1000] == lrs[59999] == pytest.approx(0.02)
    assert lrs[60000] == lrs[79999] == pytest.approx(0.002)  # at exactly 60k
    assert lrs[80000] == lrs[89999] == pytest.approx(0.0002)  # at exactly 80k


@pytest.mark.parametrize("images, lr", [(16, 0.02), (8, 0.01), (2, 0.0025)])
def test_coco_1x_scales_the_lr_linearly(tmp_path, images, lr):
    cfg = _compose(tmp_path, "experiment=coco_r50_fpn_1x")
    config, _ = _optimizer_and_schedule(cfg, images_per_step=images)
    assert config["optimizer"].param_groups[0]["initial_lr"] == pytest.approx(lr)


def test_adamw_at_an_sgd_rate_is_warned_about():
    with pytest.warns(UserWarning, match="optimizer=adamw with lr=0.02: far above"):
        DetectionModule(torch.nn.Linear(2, 2), optimizer="adamw", lr=0.02)


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0}, "lr must be positive"),
    ({"milestones": [0.5, 1.5], "decay": "step"}, "milestones are fractions"),
    ({"milestone_steps": [0, 10], "decay": "step"}, "milestone_steps must be positive"),
    ({"lr_reference_batch": 0}, "lr_reference_batch must be a positive"),
])
def test_bad_schedule_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DetectionModule(torch.nn.Linear(2, 2), **kwargs)


def test_finetune_is_the_small_data_recipe_it_states(tmp_path):
    cfg = _compose(tmp_path, "experiment=finetune", "model.init_weights=/some/weights.pth")
    assert cfg.data._target_ == "detector.training.CocoDataModule"
    assert cfg.model.init_weights == "/some/weights.pth" and cfg.model.init_class_map == "auto"
    config, total = _optimizer_and_schedule(cfg)
    optimizer = config["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["initial_lr"], group["momentum"], group["weight_decay"]) == (0.005, 0.9, 5e-4)
    lrs = _lrs(config, [0, 100, 669, 670, 889, 890, 999])
    assert lrs[0] == pytest.approx(0.005 * 0.001)
    assert lrs[100] == lrs[669] == pytest.approx(0.005)
    assert lrs[670] == lrs[889] == pytest.approx(0.0005)  # 67% of training
    assert lrs[890] == lrs[999] == pytest.approx(0.00005)  # 89%
