"""rcnn-train on COCO json without masks (the usual export of labelling
tools): the default Mask R-CNN is refused before its first step with a message
that names the file, the count and the fix; a box-only model runs to
results.json with no other flag; data where only some instances have masks
trains the mask model, with one warning that counts the others."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from detector.data import make_synthetic_coco
from detector.training import train

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def _strip(annotations: Path, out: Path, keep_every: int = 0) -> Path:
    """A copy of a COCO json whose annotations lose their segmentation (the
    key left out, or an empty list, alternately); with ``keep_every`` = k,
    every k-th annotation keeps it."""
    data = json.loads(annotations.read_text())
    for i, ann in enumerate(data["annotations"]):
        if keep_every and i % keep_every == 0:
            continue
        if i % 2:
            ann["segmentation"] = []
        else:
            del ann["segmentation"]
    out.write_text(json.dumps(data))
    return out


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """Tiny synthetic train / val splits: box-only and partly masked jsons."""
    root = tmp_path_factory.mktemp("boxes")
    made = {split: make_synthetic_coco(root / "data", split, count, (96, 128))
            for split, count in (("train", 4), ("val", 2))}
    return {kind: {split: (images, _strip(annotations, root / f"{split}_{kind}.json",
                                          keep_every=2 if kind == "partial" else 0))
                   for split, (images, annotations) in made.items()}
            for kind in ("box_only", "partial")}


def _cfg(tmp_path, split, *overrides):
    (train_images, train_json), (val_images, val_json) = split["train"], split["val"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=coco", f"data.train.images={train_images}",
            f"data.train.annotations={train_json}", f"data.val.images={val_images}",
            f"data.val.annotations={val_json}", "data.num_workers=0", "data.batch_size=2",
            "model.transform.min_size=96", "model.transform.max_size=128",
            "model.backbone_width=16", "model.fpn_channels=32", "model.representation_size=64",
            "model.mask_channels=32", "model.rpn.post_nms_top_n.testing=100",
            "~callbacks.pictures", "module.val_loss=false",
            f"paths.output_dir={tmp_path / 'run'}", f"paths.log_dir={tmp_path / 'logs'}",
            "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1", "~callbacks.progress",
            "module.warmup_steps=1", *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def test_the_default_mask_model_is_refused_before_its_first_step(tmp_path, splits):
    train_json = splits["box_only"]["train"][1]
    instances = len(json.loads(train_json.read_text())["annotations"])
    with pytest.raises(ValueError, match=(
            rf"{train_json} has no instance masks \(none of its {instances} instances has a "
            r"segmentation\).*model=faster_rcnn")):
        train(_cfg(tmp_path, splits["box_only"]))
    assert not (tmp_path / "run" / "checkpoints").exists()  # not a step was trained


@pytest.mark.parametrize("model", ["model=faster_rcnn", "model.masks=false"])
def test_a_box_only_model_runs_to_results(tmp_path, splits, model):
    """No other flag: the monitored metric follows the model (val/bbox_AP)."""
    metrics = train(_cfg(tmp_path, splits["box_only"], model))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["metrics"] == metrics and set(metrics) == {"bbox"}
    assert Path(results["checkpoint"]).name == "best-epoch000.ckpt"  # chosen on val/bbox_AP


def test_partly_masked_data_trains_the_mask_model(tmp_path, splits):
    train_json = splits["partial"]["train"][1]
    instances = len(json.loads(train_json.read_text())["annotations"])
    without = instances // 2  # every other annotation keeps its segmentation
    with pytest.warns(UserWarning, match=rf"{without} of the {instances} training instances "
                                         "have no segmentation"):
        metrics = train(_cfg(tmp_path, splits["partial"]))
    assert set(metrics) == {"bbox", "segm"}
    assert all(0.0 <= v <= 1.0 or v == -1.0 for v in metrics["segm"].values())
