"""Evaluating a checkpoint tells the truth: the model is the checkpoint's own
(ROI operators, classes, resize), the documented rcnn-evaluate command needs
only the split it scores, a model override counts only when given, and labels
map to category ids through the model whatever the split's json lists."""

import json
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch import nn

from detector.data.categories import Categories
from detector.training import CocoDataModule, DetectionModule, train
from detector.training.checkpoint_model import (
    apply_changes,
    check_resumed_model,
    explicit_changes,
    given_paths,
    model_to_evaluate,
    names_the_model,
)
from test_train_entry import _cfg

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory):
    """A few steps of a ROI Pool run on tiny synthetic data: its folder."""
    tmp_path = tmp_path_factory.mktemp("pool")
    train(_cfg(tmp_path, "roi_op=pool"))
    return tmp_path


def test_the_documented_evaluate_command_reproduces_the_run(pool_run, tmp_path):
    """`rcnn-evaluate ckpt_path=PATH data=coco data.test.images=DIR
    data.test.annotations=FILE`, as documented, with no roi_op given and no
    training split: the ROI Pool run's best checkpoint on its own test split
    gives the run's own test metrics, with the checkpoint's ROI Pool model and
    its resize (data=coco's 800 px default is not the checkpoint's)."""
    results = json.loads((pool_run / "run" / "results.json").read_text())
    annotations = next((pool_run / "data").glob("synthetic-test-*/annotations.json"))
    done = subprocess.run(
        [str(BIN / "rcnn-evaluate"), f"ckpt_path={results['checkpoint']}", "data=coco",
         f"data.test.images={annotations.parent / 'images'}",
         f"data.test.annotations={annotations}", "data.num_workers=0",
         f"hydra.run.dir={tmp_path / 'eval'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert evaluated["split"] == "test"
    assert evaluated["model"]["box_op"]["_target_"] == "ops.roi_pool"
    assert evaluated["model"]["mask_op"]["_target_"] == "ops.roi_pool"
    assert evaluated["model"]["transform"]["min_size"] == 96
    assert evaluated["model_changes"] == []
    assert evaluated["metrics"] == results["metrics"]


def test_an_explicit_override_is_applied_and_reported(pool_run, tmp_path):
    best = json.loads((pool_run / "run" / "results.json").read_text())["checkpoint"]
    train(_cfg(pool_run, "train=false", f"ckpt_path={best}", "roi_op=align", run="align"))
    evaluated = json.loads((pool_run / "align" / "results.json").read_text())
    assert evaluated["model"]["box_op"]["_target_"] == "ops.roi_align"
    changed = {c["key"]: c for c in evaluated["model_changes"]}
    assert set(changed) == {"model.box_op", "model.mask_op"}  # the resize given is the same
    assert changed["model.box_op"]["checkpoint"]["_target_"] == "ops.roi_pool"
    saved = torch.load(best, weights_only=True)["hyper_parameters"]["model"]
    given = [("num_classes",)]
    model_to_evaluate(best, {**saved, "num_classes": 7}, saved, given)  # the same: fine
    with pytest.raises(ValueError, match="model.num_classes: the classes of a checkpoint"):
        model_to_evaluate(best, {**saved, "num_classes": 3}, saved, given)
    with pytest.raises(ValueError, match="has a mask head, which an evaluation cannot drop"):
        model_to_evaluate(best, {**saved, "masks": False}, saved)


def test_a_checkpoint_without_category_ids_takes_them_by_name(pool_run):
    """Checkpoints written before the ids were kept still evaluate: the ids
    come from the tested split, matched by class name, with a warning."""
    best = json.loads((pool_run / "run" / "results.json").read_text())
    checkpoint = torch.load(best["checkpoint"], weights_only=True)
    del checkpoint["hyper_parameters"]["model"]["category_ids"]
    old = pool_run / "old.ckpt"
    torch.save(checkpoint, old)
    with pytest.warns(UserWarning, match="does not keep its category ids"):
        metrics = train(_cfg(pool_run, "train=false", f"ckpt_path={old}", run="old"))
    assert metrics == best["metrics"]


def test_resuming_tolerates_what_another_version_or_machine_changes(pool_run, caplog):
    """A key the checkpoint does not have (a setting added since) is a warning,
    and the pretrained file may have moved (the checkpoint's weights replace
    it); a setting of the checkpoint given another value is refused."""
    last = str(pool_run / "run" / "checkpoints" / "last.ckpt")
    saved = torch.load(last, weights_only=True)["hyper_parameters"]["model"]
    check_resumed_model(last, {**saved, "backbone_weights": "/moved/r18.pth",
                               "a_new_setting": True, "inference": {"score_thresh": 0.5}})
    assert "model.a_new_setting" in caplog.text
    with pytest.raises(ValueError, match="model.depth: 18 in the checkpoint, 50 now"):
        check_resumed_model(last, {**saved, "depth": 50})


def test_resuming_with_another_model_is_refused(pool_run):
    """The kin of evaluating with today's config: a ROI Pool run resumed without
    roi_op=pool would go on training with ROI Align."""
    last = pool_run / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match="is resumed with another model.*model.box_op: "
                                         ".*ops.roi_pool.* in the checkpoint"):
        train(_cfg(pool_run, f"ckpt_path={last}", run="resumed"))


def test_changes_are_found_and_applied_by_key():
    saved = {"_target_": "b.fpn", "depth": 18, "box_op": {"_target_": "ops.roi_pool",
                                                          "output_size": 7},
             "transform": {"_target_": "t.T", "min_size": 96, "max_size": 128}}
    baseline = {"_target_": "b.fpn", "depth": 50, "box_op": {"_target_": "ops.roi_align",
                                                             "output_size": 7, "aligned": True},
                "transform": {"_target_": "t.T", "min_size": 800, "max_size": 1333}}
    configured = {**baseline, "box_op": {"_target_": "ops.roi_warp", "output_size": 7},
                  "transform": {**baseline["transform"], "min_size": 1024}}
    changes = explicit_changes(configured, baseline)
    assert changes == {("box_op",): configured["box_op"], ("transform", "min_size"): 1024}
    spec = apply_changes(saved, changes)
    assert spec["box_op"] == {"_target_": "ops.roi_warp", "output_size": 7}
    assert spec["transform"] == {"_target_": "t.T", "min_size": 1024, "max_size": 128}
    assert spec["depth"] == 18  # not given: the checkpoint's
    assert [o for o in ["roi_op=pool", "+model.x=1", "model.transform.min_size=9", "data=coco",
                        "backbone=resnet_c5", "seed=1", "experiment=smoke"]
            if names_the_model(o)] == ["roi_op=pool", "+model.x=1", "model.transform.min_size=9",
                                       "backbone=resnet_c5", "experiment=smoke"]


def test_an_override_that_sets_the_default_is_explicit_too():
    """roi_op=align is the default: given on the command line it still names
    the model's operators (found through the config's interpolations)."""
    model = OmegaConf.create({"roi_op": {"box": {"_target_": "ops.roi_align"}, "mask": None},
                              "model": {"box_op": "${roi_op.box}", "mask_op": "${roi_op.mask}",
                                        "transform": {"min_size": 96}, "depth": 18}}).model
    assert given_paths(model, ["roi_op=align", "model.transform.min_size=96", "seed=2"]) == [
        ("transform", "min_size"), ("box_op",), ("mask_op",)]
    assert given_paths(model, ["data=coco"]) == []


# labels -> category ids through the model --------------------------------------------------
class GroundTruthModel(nn.Module):
    """Returns, for the i-th image it is given, the ground truth of the i-th
    image of ``truths`` as detections (labels by the model's categories): a
    perfect detector, whose AP is 1 by COCO's definition."""

    def __init__(self, truths: list[dict], category_ids: list[int]):
        super().__init__()
        self.truths, self.category_ids, self.mask_threshold = truths, category_ids, 0.5
        self.roi_heads = SimpleNamespace(has_masks=False)
        self.seen = 0

    def forward(self, images):
        out = []
        for _ in images:
            truth = self.truths[self.seen % len(self.truths)]
            self.seen += 1
            out.append({"boxes": truth["boxes"], "labels": truth["labels"],
                        "scores": torch.linspace(0.9, 0.5, len(truth["labels"]))})
        return out


def _without_category(path: Path, dropped: int, out: Path, shuffle: bool, keep_listed: bool):
    data = json.loads(path.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != dropped]
    if not keep_listed:
        data["categories"] = [c for c in data["categories"] if c["id"] != dropped]
    if shuffle:
        random.Random(0).shuffle(data["categories"])
    out.write_text(json.dumps(data))
    return out


def test_a_val_json_listing_a_subset_of_the_categories_scores_the_same(trained, tmp_path):
    """The validation json lists 5 of the 6 training categories, shuffled (one
    rare class has no validation instance): it scores what the full list
    scores, and a perfect detector (the ground truth) scores AP 1 with both."""
    _, _, data = trained
    train_split, val_split = data.splits["train"], data.splits["val"]
    val_json = Path(val_split["annotations"])
    used = {a["category_id"] for a in json.loads(val_json.read_text())["annotations"]}
    dropped = min(used)  # a category the model knows, with instances to lose
    full = _without_category(val_json, dropped, tmp_path / "full.json", False, True)
    subset = _without_category(val_json, dropped, tmp_path / "subset.json", True, False)
    categories = data.categories
    label_of = {c: i for i, c in enumerate(categories.ids, start=1)}
    scores = {}
    for name, annotations in (("full", full), ("subset", subset)):
        module_data = CocoDataModule(train_split, {**val_split, "annotations": str(annotations)},
                                     batch_size=2)
        dataset = module_data.dataset("val")
        truths = []
        for image_id in dataset.image_ids:
            anns = [a for a in dataset.coco.imgToAnns[image_id] if not a.get("iscrowd", 0)]
            truths.append({
                "boxes": torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                        a["bbox"][1] + a["bbox"][3]] for a in anns]).reshape(-1, 4),
                "labels": torch.tensor([label_of[a["category_id"]] for a in anns],
                                       dtype=torch.int64)})
        # the split's own labels are the model's too (the validation loss uses them)
        _, target = dataset[0]
        own = [label_of[a["category_id"]] for a in dataset.coco.imgToAnns[dataset.image_ids[0]]
               if not a.get("iscrowd", 0)]
        assert target["labels"].tolist() == own
        module = DetectionModule(GroundTruthModel(truths, list(categories.ids)), val_loss=False)
        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False)
        trainer.validate(module, module_data, verbose=False)
        scores[name] = module.metrics["val"]["bbox"]
    assert scores["full"]["AP"] == pytest.approx(1.0)
    assert scores["subset"] == scores["full"]


def test_a_split_contradicting_the_model_categories_is_refused():
    model = Categories((1, 3), ("cat", "dog"), "train.json")
    model.check([{"id": 3, "name": "dog"}], [{"category_id": 3}], "val.json")  # a subset
    model.check([{"id": 7, "name": "cow"}], [], "val.json")  # unknown, but never used
    with pytest.raises(ValueError, match="val.json: category id 3 is named 'cow', but "
                                         "train.json names it 'dog'"):
        model.check([{"id": 3, "name": "cow"}], [], "val.json")
    with pytest.raises(ValueError, match="val.json: category 'dog' has id 2, but id 3 in "
                                         "train.json"):
        model.check([{"id": 2, "name": "dog"}], [], "val.json")
    with pytest.raises(ValueError, match="'cow' \\(id 7, 2 annotations\\) is not one of the "
                                         "model's categories"):
        model.check([{"id": 7, "name": "cow"}], [{"category_id": 7}] * 2, "val.json")
