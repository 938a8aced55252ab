"""A recipe that cannot learn is refused: training a backbone that freezes
stages or BatchNorm with no ``backbone_weights`` to freeze ends before the
first step with an error naming the settings; every shipped config that
trains from scratch (the default, the studies) still trains; evaluating such
a model (its weights come from a checkpoint) is not refused."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torchvision
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torchvision.ops.misc import FrozenBatchNorm2d

from detector.modeling.backbones import frozen_without_weights
from detector.loading.spec import build_model
from detector.training import DetectionModule, SyntheticDataModule

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def _spec(tmp_path, *overrides) -> dict:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={tmp_path / 'run'}",
                                          f"paths.data_dir={tmp_path / 'data'}", *overrides])
    return OmegaConf.to_container(cfg.model, resolve=True)


def _frozen_anything(model) -> bool:
    """The oracle, read off the module tree: a backbone parameter that does not
    train, or a frozen BatchNorm anywhere."""
    return (any(not p.requires_grad for p in model.backbone.parameters())
            or any(isinstance(m, FrozenBatchNorm2d) for m in model.modules()))


CANNOT_LEARN = {"backbone=resnet50_fpn", "backbone=vgg16", "experiment=coco_r50_fpn_1x"}


@pytest.mark.parametrize("choice", ["default"] + [f"backbone={b}" for b in _options("backbone")]
                         + [f"experiment={e}" for e in _options("experiment")])
def test_exactly_the_configs_that_freeze_random_layers_are_flagged(tmp_path, choice):
    overrides = [] if choice == "default" else [choice]
    if choice == "backbone=vgg16":
        overrides.append("model=faster_rcnn")
    spec = _spec(tmp_path, *overrides)
    assert spec["backbone_weights"] is None
    model = build_model({**spec, "num_classes": 3}, trust=True)
    flagged = frozen_without_weights(model)
    assert bool(flagged) == _frozen_anything(model) == (choice in CANNOT_LEARN), flagged
    if flagged:  # and the settings it names make the model trainable from scratch
        fixed = dict(spec, num_classes=3, **dict(fix.split("=") for _, fix in flagged))
        fixed = {k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in fixed.items()}
        retrained = build_model(fixed, trust=True)
        assert not frozen_without_weights(retrained) and not _frozen_anything(retrained)


def _tiny_data(tmp_path):
    return SyntheticDataModule(str(tmp_path / "data"), num_train=2, num_val=2, num_test=0,
                               image_size=(64, 80), batch_size=2)


def _trainer(tmp_path, val_batches=0):
    return pl.Trainer(max_steps=1, accelerator="cpu", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=val_batches, default_root_dir=tmp_path)


class _Counting(DetectionModule):
    steps = 0

    def training_step(self, batch, batch_idx):
        type(self).steps += 1
        return super().training_step(batch, batch_idx)


def test_the_coco_recipe_without_weights_is_refused_before_training(tmp_path):
    spec = _spec(tmp_path, "experiment=coco_r50_fpn_1x")
    spec["transform"].update(min_size=64, max_size=80)
    module = _Counting(spec, lr=0.02)
    with pytest.raises(ValueError) as error:
        _trainer(tmp_path).fit(module, _tiny_data(tmp_path))
    message = str(error.value)
    assert "model.backbone_weights is not set" in message
    assert "stem, layer1 frozen (trainable_stages=3)" in message
    assert "BatchNorm frozen (norm=frozen_bn)" in message
    assert "model.trainable_stages=5 model.norm=bn" in message
    assert _Counting.steps == 0


R18 = {"_target_": "detector.modeling.builders.fpn_rcnn", "num_classes": None, "depth": 18,
       "norm": "frozen_bn", "trainable_stages": 3, "fpn_channels": 32,
       "representation_size": 64, "mask_channels": 32,
       "anchor_sizes": [16, 32, 64, 128, 256],
       "transform": {"_target_": "detector.modeling.transform.ImageTransform", "min_size": 64,
                     "max_size": 80}}


def test_the_same_recipe_with_weights_trains(tmp_path):
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    module = DetectionModule({**R18, "backbone_weights": str(weights)}, lr=0.01, warmup_steps=1)
    trainer = _trainer(tmp_path)
    trainer.fit(module, _tiny_data(tmp_path))
    assert trainer.global_step == 1


def test_evaluating_such_a_model_is_not_refused(tmp_path):
    """Its weights come from the checkpoint; only training is refused."""
    module = DetectionModule(dict(R18), val_loss=False)
    trainer = _trainer(tmp_path, val_batches=1)
    data = _tiny_data(tmp_path)
    trainer.validate(module, data, verbose=False)
    assert frozen_without_weights(module.model)  # it is such a model
