"""Every config in configs/ composes, and what it names instantiates: each
option of each group, and each experiment."""

import contextlib
from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

import detector
from detector.data import make_synthetic_coco
from detector.training import DetectionDataModule
from detector.training.run import _instantiate_all, monitored_metric

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GROUPS = ["data", "augment", "roi_op", "model", "backbone", "trainer", "callbacks", "logger",
          "paths", "experiment"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def _compose(tmp_path, *overrides) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=[
            f"paths.output_dir={tmp_path / 'run'}", f"paths.data_dir={tmp_path / 'data'}",
            f"paths.log_dir={tmp_path / 'logs'}", *overrides])


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory):
    """A tiny synthetic split in COCO format, standing in for the COCO paths."""
    root = tmp_path_factory.mktemp("coco")
    images, annotations = make_synthetic_coco(root, "val", 2, (64, 80))
    return {"images": str(images), "annotations": str(annotations)}


@pytest.fixture(scope="module")
def photo_data_dir(tmp_path_factory):
    """Where the real-photo datasets (coins, galaxies) are written once for these tests."""
    return tmp_path_factory.mktemp("photos")


def _coco_paths(tiny_coco) -> list[str]:
    return [f"data.{split}.{key}={value}" for split in ("train", "val")
            for key, value in tiny_coco.items()]


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), f"configs/{group}/ is empty"


@pytest.mark.parametrize("roi_op", options("roi_op"))
def test_roi_op_configs_give_working_operators(tmp_path, roi_op):
    cfg = _compose(tmp_path, f"roi_op={roi_op}")
    features = torch.randn(1, 3, 16, 16)
    boxes = torch.tensor([[0.0, 1.0, 2.0, 9.5, 12.0]])
    for branch in ("box", "mask"):
        op = hydra.utils.instantiate(cfg.roi_op[branch])
        size = cfg.roi_op[branch].output_size
        assert op(features, boxes, spatial_scale=1.0).shape == (1, 3, size, size)
    expected = {"pool": "roi_pool", "warp_max": "roi_warp", "warp_avg": "roi_warp"}
    assert cfg.roi_op.box._target_ == "ops." + expected.get(roi_op, "roi_align")
    if roi_op.endswith(("_max", "_avg")):
        assert cfg.roi_op.box.mode == roi_op.split("_")[1]
    if roi_op.startswith("align"):
        assert cfg.roi_op.box.aligned == (roi_op == "align")


@pytest.mark.parametrize("backbone", options("backbone"))
@pytest.mark.parametrize("model", options("model"))
def test_model_and_backbone_configs_instantiate(tmp_path, model, backbone):
    cfg = _compose(tmp_path, f"model={model}", f"backbone={backbone}")
    net = hydra.utils.instantiate(cfg.model, num_classes=3)
    assert isinstance(net, detector.GeneralizedRCNN)
    assert net.roi_heads.has_masks == (model == "mask_rcnn")
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    assert monitored_metric(cfg.monitor, spec) == (
        "val/segm_AP" if model == "mask_rcnn" else "val/bbox_AP")


@pytest.mark.parametrize("overrides, expected", [
    ((), "val/segm_AP"), (("model.masks=false",), "val/bbox_AP"),
    (("model=faster_rcnn",), "val/bbox_AP"),
    (("model=faster_rcnn", "monitor=val/bbox_AP50"), "val/bbox_AP50"),
    (("monitor=val/loss",), "val/loss")])
def test_the_monitored_metric_follows_the_model_unless_set(tmp_path, overrides, expected):
    cfg = _compose(tmp_path, *overrides)
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    assert monitored_metric(cfg.monitor, spec) == expected


def test_default_model_runs_on_an_image(tmp_path):
    cfg = _compose(tmp_path)
    net = hydra.utils.instantiate(cfg.model, num_classes=7).eval()
    with torch.no_grad():
        (out,) = net([torch.rand(3, 64, 96)])
    assert {"boxes", "labels", "scores", "masks"} <= set(out)


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainer_configs_instantiate(tmp_path, trainer):
    cfg = _compose(tmp_path, f"trainer={trainer}")
    if trainer == "gpu" and not torch.cuda.is_available():
        assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "16-mixed"
        cfg.trainer.accelerator, cfg.trainer.precision = "cpu", "bf16-mixed"
    pl_trainer = hydra.utils.instantiate(cfg.trainer, callbacks=_instantiate_all(cfg.callbacks),
                                         logger=_instantiate_all(cfg.logger))
    assert isinstance(pl_trainer, pl.Trainer)


@pytest.mark.parametrize("logger", options("logger"))
def test_logger_configs_instantiate(tmp_path, logger):
    cfg = _compose(tmp_path, f"logger={logger}")
    loggers = _instantiate_all(cfg.logger)
    assert loggers and all(isinstance(lg, pl.loggers.Logger) for lg in loggers)


@pytest.mark.parametrize("data", options("data"))
def test_data_configs_instantiate(tmp_path, tiny_coco, photo_data_dir, data):
    overrides = ["data.num_train=2", "data.num_val=2", "data.image_size=[64,80]"]
    if data in ("coins", "galaxies"):
        pytest.importorskip("skimage")
        overrides = [f"paths.data_dir={photo_data_dir}"]
    if data == "coco":
        overrides = _coco_paths(tiny_coco)
    if data == "voc":
        from test_voc_dataset import _make_voc

        root = _make_voc(tmp_path / "VOC2007")
        overrides = [f"data.root={root}", "data.val.split=trainval", "data.num_workers=0"]
    cfg = _compose(tmp_path, f"data={data}", *overrides)
    datamodule = hydra.utils.instantiate(cfg.data)
    assert isinstance(datamodule, DetectionDataModule)
    with contextlib.ExitStack() as expected:
        if data == "voc":  # the folder's Segmentation list is the shorter one
            from test_voc_dataset import SEGMENTATION_SHORTER

            expected.enter_context(pytest.warns(UserWarning, match=SEGMENTATION_SHORTER))
        images, targets = next(iter(datamodule.val_dataloader()))
    assert len(images) == len(targets) > 0


def test_coco_config_requires_paths(tmp_path):
    """A split is needed when a stage uses it, and the error says how to set it."""
    datamodule = hydra.utils.instantiate(_compose(tmp_path, "data=coco").data)
    with pytest.raises(ValueError, match="training needs data.train.*data.train.images=DIR"):
        datamodule.train_dataloader()
    with pytest.raises(ValueError, match="testing needs data.test or data.val.*data.val.images"):
        datamodule.test_dataloader()
    with pytest.raises(Exception, match="data.val needs annotations too"):  # Hydra wraps it
        hydra.utils.instantiate(_compose(tmp_path, "data=coco", "data.val.images=x").data)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_configs_instantiate(tmp_path, tiny_coco, photo_data_dir, experiment):
    cfg = _compose(tmp_path, f"experiment={experiment}")
    if cfg.data._target_.endswith("PhotoDataModule"):  # real photos, built once per module
        pytest.importorskip("skimage")
        cfg = _compose(tmp_path, f"experiment={experiment}", f"paths.data_dir={photo_data_dir}")
    elif cfg.data._target_.endswith("CocoDataModule"):
        cfg = _compose(tmp_path, f"experiment={experiment}", *_coco_paths(tiny_coco),
                       "data.num_workers=0")
    else:
        cfg = _compose(tmp_path, f"experiment={experiment}", "data.num_train=2",
                       "data.num_val=2", "data.image_size=[64,80]")
    datamodule = hydra.utils.instantiate(cfg.data)
    net = hydra.utils.instantiate(cfg.model, num_classes=len(datamodule.class_names))
    assert isinstance(net, detector.GeneralizedRCNN)
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        cfg.trainer.accelerator, cfg.trainer.precision = "cpu", "bf16-mixed"
    assert isinstance(hydra.utils.instantiate(cfg.trainer), pl.Trainer)


STUDIES = {  # issue 5: what each ablation study sweeps, and how many runs that makes
    "roi_ops_c4": ({"roi_op": ["pool", "warp_max", "warp_avg", "align_max", "align_avg"]}, 15),
    "roi_ops_c5": ({"roi_op": ["pool", "align_avg"]}, 6),
    "roi_ops_c4_long": ({"roi_op": ["pool", "warp_max", "warp_avg", "align_avg"]}, 12),
    "roi_ops_c5_long": ({"roi_op": ["pool", "align_avg"]}, 6),
    "sampling": ({"roi_op": ["align_avg", "align_s1", "align_adaptive", "align"]}, 12),
    "object_size": ({"data.object_size": ["small", "large"], "roi_op": ["pool", "align_avg"]},
                    12),
    "object_size_fpn": ({"data.object_size": ["small", "large"], "roi_op": ["pool", "align_avg"]},
                        12),
}


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_ablation_studies_sweep_what_they_claim(tmp_path, study):
    """Each study sweeps three seeds, seed first, over its variants; every
    variant composes, and the variants differ only in what is swept (one
    model, schedule and optimizer for all)."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={study}"], return_hydra_config=True)
    params = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
    variants, runs = STUDIES[study]
    assert list(params)[0] == "seed" and params.pop("seed") == ["0", "1", "2"]
    assert params == variants
    count = 3
    for values in params.values():
        count *= len(values)
    assert count == runs
    shared = None
    for key, values in params.items():
        for value in values:
            run = _compose(tmp_path, f"experiment={study}", f"{key}={value}")
            assert run.get(key.split(".")[0]) is not None
            same = (run.module, run.trainer.max_epochs, run.model._target_,
                    run.model.backbone_width)
            assert shared in (None, same)
            shared = same


def test_auto_monitors_box_ap_when_the_validation_split_has_no_masks():
    """Its segm AP would be the same whatever the model: the best checkpoint
    would be the first one."""
    from detector.data.instances import MaskCounts

    spec = {"masks": True}
    assert monitored_metric("auto", spec, MaskCounts(0, 5, "val.json")) == "val/bbox_AP"
    assert monitored_metric("auto", spec, MaskCounts(2, 5, "val.json")) == "val/segm_AP"
    assert monitored_metric("val/segm_AP", spec, MaskCounts(0, 5, "val.json")) == "val/segm_AP"


def test_every_group_that_sets_the_model_is_known_to_evaluation():
    """An evaluation applies the model settings that these groups give
    (detector.training.checkpoint_model.MODEL_KEYS); a group that writes the
    model and is not listed would be ignored without a word. ``data`` sets the
    resize on purpose, and evaluation keeps the checkpoint's."""
    import re

    from detector.training.checkpoint_model import MODEL_KEYS

    configs = Path(__file__).resolve().parents[1] / "configs"
    for path in configs.glob("*/*.yaml"):
        text = path.read_text()
        writes_model = (re.search(r"^model:", text, re.M) is not None
                        or re.search(r"override /(model|backbone|roi_op)\b", text) is not None
                        or re.search(r"^\s*- /(model|backbone|roi_op|ablation)\b", text, re.M))
        if writes_model and path.parent.name not in ("data", "cli", "hydra"):
            assert path.parent.name in MODEL_KEYS, path
