"""docs/fine-tuning.md's commands, run in order as written, in a folder laid out
as the page says: the COCO weights file is a random-weights stand-in (the
page's command with weights=None: nothing is downloaded), the data are
synthetic shapes relabelled with two COCO class names and one new one, the
photos are scikit-image's; training is cut to two steps at a small resize."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detector.data.builders.synthetic import make_synthetic_coco

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "fine-tuning.md"
CLASSES = {1: "dog", 2: "widget", 3: "person"}
# appended to rcnn-train: a few steps of R50-FPN on a CPU
SHORT = ("trainer.max_steps=2 trainer.max_epochs=1 trainer.check_val_every_n_epoch=1 "
         "model.transform.min_size=128 model.transform.max_size=160 data.num_workers=0 "
         "module.warmup_steps=1 ~callbacks.progress")


def page_commands() -> list[str]:
    """The page's ```bash blocks, one command per line (continuations joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.S)
    commands = []
    for block in blocks:
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip():
                commands.append(" ".join(command.split()))
    return commands


def _lay_out_data(folder: Path) -> None:
    """mydata/{train,val}/images + annotations.json, as the page lays it out."""
    for split, count in (("train", 4), ("val", 2)):
        images, annotations = make_synthetic_coco(folder / "synthetic", split, count,
                                                  (120, 160), seed=5)
        data = json.loads(annotations.read_text())
        data["annotations"] = [a for a in data["annotations"] if a["category_id"] in CLASSES]
        data["categories"] = [{"id": i, "name": n} for i, n in CLASSES.items()]
        target = folder / "mydata" / split
        target.mkdir(parents=True)
        (target / "images").symlink_to(images.resolve())
        (target / "annotations.json").write_text(json.dumps(data))


def _photos(folder: Path) -> None:
    data = pytest.importorskip("skimage.data")
    (folder / "photos").mkdir()
    Image.fromarray(data.astronaut()).resize((256, 256)).save(folder / "photos" / "a.jpg")
    Image.fromarray(data.coffee()).resize((200, 150)).save(folder / "photos" / "b.jpg")


@pytest.mark.slow
def test_the_fine_tuning_page_runs_as_written(tmp_path):
    commands = page_commands()
    assert [c.split()[0] for c in commands] == [
        "python", "rcnn-train", "rcnn-evaluate", "rcnn-predict", "rcnn-export", "rcnn-predict"]
    assert "weights='COCO_V1'" in commands[0]
    _lay_out_data(tmp_path)
    _photos(tmp_path)
    env_bin = str(Path(sys.executable).parent)
    for command in commands:
        if command.startswith("python "):  # the stand-in: the same command, no download
            command = command.replace("weights='COCO_V1'", "weights=None, weights_backbone=None")
            command = command.replace("python ", shlex.quote(sys.executable) + " ", 1)
        if command.startswith("rcnn-train "):
            command = f"{command} {SHORT}"
        done = subprocess.run(["bash", "-c", f"set -eo pipefail; PATH={env_bin}:$PATH; {command}"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-4000:])
        if command.startswith("rcnn-train "):
            assert "Initial weights from maskrcnn_coco.pth (torchvision)" in done.stdout
            assert "dog (source label 18), person (source label 1)" in done.stdout
    table = json.loads((tmp_path / "outputs" / "finetune" / "init_weights.json").read_text())
    assert len(table["class_specific_reinitialised"]) == 6 and not table["left_out"]
    results = json.loads((tmp_path / "outputs" / "finetune-eval" / "results.json").read_text())
    assert set(results["metrics"]) == {"bbox", "segm"}
    for folder in ("predict", "predict-onnx"):  # a picture per photo, the data's class names
        assert {p.name for p in (tmp_path / "outputs" / folder).glob("*.png")} == {"a.png",
                                                                                  "b.png"}
        predictions = json.loads((tmp_path / "outputs" / folder / "predictions.json").read_text())
        assert {p["category_name"] for p in predictions} <= set(CLASSES.values())
    checkpoint = next((tmp_path / "outputs" / "finetune" / "checkpoints").glob("best-*.ckpt"))
    spec = torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"][
        "model"]
    assert spec["class_names"] == ["__background__", "dog", "widget", "person"]
    assert np.allclose(spec["transform"]["mean"], [0.485, 0.456, 0.406])
