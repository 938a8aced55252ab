"""Fine-tuning through the commands a user types: rcnn-train with
model.init_weights=CHECKPOINT on data with other classes prints and writes the
load table, and its checkpoints name the new classes and keep the source's
normalisation; the run resumes and is evaluated once the source file is gone."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import detector
from detector.data.builders.synthetic import make_synthetic_coco

BIN = Path(sys.executable).parent
# the shapes of conftest.SPEC's model, through the default config's groups
TINY_MODEL = ["model.backbone_width=16", "model.fpn_channels=32", "model.representation_size=64",
              "model.mask_channels=32", "model.transform.min_size=96",
              "model.transform.max_size=128"]
NEW_CLASSES = {1: "circle", 2: "box"}  # synthetic 'circle' kept by name, 'rectangle' renamed


def relabelled_split(root: Path, split: str, num_images: int) -> tuple[Path, Path]:
    """A synthetic split with two categories: circle (as in the source model)
    and rectangle renamed 'box' (a class the source does not know)."""
    images, annotations = make_synthetic_coco(root, split, num_images, (96, 128), seed=3)
    data = json.loads(annotations.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] in NEW_CLASSES]
    data["categories"] = [{"id": i, "name": n, "supercategory": "shape"}
                          for i, n in NEW_CLASSES.items()]
    path = root / f"{split}_relabelled.json"
    path.write_text(json.dumps(data))
    return images, path


def _rcnn(command, *args, cwd):
    done = subprocess.run([str(BIN / command), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def test_a_run_started_from_a_checkpoint_names_the_new_classes(trained, tmp_path):
    ckpt, module, _ = trained
    # the source model was trained with its own normalisation, which must carry over
    source = torch.load(ckpt, map_location="cpu", weights_only=True)
    source["hyper_parameters"]["model"]["transform"].update(mean=[0.5, 0.4, 0.3],
                                                            std=[0.2, 0.25, 0.3])
    weights = tmp_path / "weights" / "shapes.ckpt"
    weights.parent.mkdir()
    torch.save(source, weights)
    train_images, train_json = relabelled_split(tmp_path / "data", "train", 4)
    val_images, val_json = relabelled_split(tmp_path / "data", "val", 2)
    data = ["data=coco", "data.num_workers=0", f"data.train.images={train_images}",
            f"data.train.annotations={train_json}", f"data.val.images={val_images}",
            f"data.val.annotations={val_json}"]
    short = ["trainer.max_steps=2", "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1",
             "module.warmup_steps=1", "~callbacks.progress"]
    run = tmp_path / "run"
    # the backbone frozen: it holds the file's weights, so the run is not refused
    done = _rcnn("rcnn-train", *data, *TINY_MODEL, *short, f"model.init_weights={weights}",
                 "model.freeze=[backbone]", f"hydra.run.dir={run}", cwd=tmp_path)
    assert f"Initial weights from {weights} (checkpoint)" in done.stdout
    assert "circle (source label 1)" in done.stdout  # synthetic's label 1 is circle
    table = json.loads((run / "init_weights.json").read_text())
    assert [c["name"] for c in table["classes_carried"]] == ["background", "circle"]
    assert len(table["loaded"]) == len([k for k in module.model.state_dict()
                                        if not k.endswith("num_batches_tracked")]) - 6
    assert (run / "init_weights.txt").read_text().startswith("Initial weights from")

    last = run / "checkpoints" / "last.ckpt"
    model = detector.load(last)  # the source file is not needed for that
    assert model.class_names == ["__background__", "circle", "box"]
    assert model.category_ids == [1, 2]
    assert model.transform.mean.flatten().tolist() == pytest.approx([0.5, 0.4, 0.3])
    assert model.transform.std.flatten().tolist() == pytest.approx([0.2, 0.25, 0.3])
    detections = model.predict([torch.rand(3, 90, 140)])[0]
    assert set(detections["labels"].tolist()) <= {1, 2}
    saved = torch.load(last, map_location="cpu", weights_only=True)["hyper_parameters"]["model"]
    assert saved["init_weights"] == str(weights)  # the record of where it started

    # the source file moves away: the run resumes (its frozen backbone holds the
    # checkpoint's weights), and its checkpoint is evaluated
    shutil.move(weights, tmp_path / "elsewhere.ckpt")
    _rcnn("rcnn-train", *data, *TINY_MODEL, *short[2:], "trainer.max_steps=4",
          "trainer.max_epochs=3", f"model.init_weights={weights}", "model.freeze=[backbone]",
          f"ckpt_path={last}", f"hydra.run.dir={tmp_path / 'resumed'}", cwd=tmp_path)
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", map_location="cpu",
                         weights_only=True)
    assert resumed["global_step"] == 4
    assert resumed["hyper_parameters"]["model"]["transform"]["mean"] == [0.5, 0.4, 0.3]
    assert resumed["hyper_parameters"]["model"]["init_weights"] == str(weights)  # the record
    frozen = {k: v for k, v in resumed["state_dict"].items() if k.startswith("model.backbone.body")}
    assert all(torch.equal(v, model.state_dict()[k[len("model."):]]) for k, v in frozen.items())
    _rcnn("rcnn-evaluate", f"ckpt_path={last}", "data=coco", "data.num_workers=0",
          f"data.test.images={val_images}", f"data.test.annotations={val_json}",
          f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["metrics"]["bbox"]
