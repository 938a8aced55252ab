"""The predict path: inputs (file, folder, glob), pictures and one COCO results
file, an unreadable image reported by name while the others are processed,
and the command itself (rcnn-predict)."""

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.io import decode_png, read_file

import detector
from detector.predict import find_images, load_model, predict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def photos(trained, tmp_path):
    """Two readable synthetic images and one broken file, in a folder."""
    _, _, data = trained
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in enumerate(sorted(Path(data.splits["val"]["images"]).iterdir())[:2]):
        shutil.copy(name, folder / f"shape{i}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def test_find_images(photos):
    assert [p.name for p in find_images(photos)] == ["broken.png", "shape0.png", "shape1.png"]
    assert find_images(photos / "shape1.png") == [photos / "shape1.png"]
    assert [p.name for p in find_images(str(photos / "shape*.png"))] == ["shape0.png",
                                                                         "shape1.png"]
    with pytest.raises(FileNotFoundError, match="input=.*nothing.*no image file"):
        find_images(photos / "nothing*.jpg")


def test_load_model_needs_one_source(tmp_path):
    with pytest.raises(ValueError, match="either ckpt_path=PATH .* or torchvision=NAME"):
        load_model()
    with pytest.raises(ValueError, match="either"):
        load_model(ckpt_path="a.ckpt", torchvision="maskrcnn_resnet50_fpn")
    with pytest.raises(ValueError, match="needs weights=PATH"):
        load_model(torchvision="maskrcnn_resnet50_fpn")


def test_load_model_names_the_torchvision_weights_file(tmp_path):
    missing = tmp_path / "missing.pth"
    with pytest.raises(FileNotFoundError,
                       match=r"maskrcnn_resnet50_fpn weights file \(weights=\) not found"):
        load_model(torchvision="maskrcnn_resnet50_fpn", weights=str(missing))
    not_a_state_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_state_dict)
    with pytest.raises(ValueError, match=r"weights file \(weights=\) .*list.pth must hold a state"):
        load_model(torchvision="maskrcnn_resnet50_fpn", weights=str(not_a_state_dict))


def test_predict_writes_pictures_and_results(trained, photos, tmp_path, caplog):
    path, _, _ = trained
    model = detector.load(path)
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR):
        results = predict(model, find_images(photos), out, batch_size=2, score_threshold=0.0)
    assert "broken.png" in caplog.text
    assert sorted(p.name for p in out.glob("*.png")) == ["shape0.png", "shape1.png"]
    for name in ("shape0.png", "shape1.png"):
        picture = decode_png(read_file(str(out / name)))
        original = decode_png(read_file(str(photos / name)))
        assert picture.shape == original.shape
    written = json.loads((out / "predictions.json").read_text())
    assert written == json.loads(json.dumps(results))
    assert {r["file_name"] for r in written} <= {"shape0.png", "shape1.png"}
    assert {r["image_id"] for r in written} <= {1, 2}  # indices in the sorted input list
    for r in written:
        assert {"bbox", "score", "category_id", "category_name", "segmentation"} <= set(r)
        assert r["category_name"] == model.class_names[r["category_id"]]


def test_the_command(trained, photos, tmp_path):
    path, _, _ = trained
    out = tmp_path / "cmd"
    done = subprocess.run([str(Path(sys.executable).parent / "rcnn-predict"), f"ckpt_path={path}",
                           f"input={photos / 'shape0.png'}", f"output={out}",
                           f"hydra.run.dir={tmp_path / 'hydra'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "shape0.png").is_file() and (out / "predictions.json").is_file()


def test_category_ids_are_the_training_datas(trained, photos, tmp_path):
    """The checkpoint keeps the data's category id of every label, and
    predictions.json reports those ids (COCO ids have gaps: label 1 need not
    be category 1), with the names of the labels they came from."""
    path, _, data = trained
    model = detector.load(path)
    assert model.category_ids == data.category_ids == [1, 2, 3, 4, 5, 6]
    model.category_ids = [10, 20, 30, 40, 50, 60]  # as if trained on ids with gaps
    results = predict(model, find_images(photos / "shape0.png"), tmp_path / "ids",
                      score_threshold=0.0)
    assert results
    for r in results:
        label = model.category_ids.index(r["category_id"]) + 1
        assert r["category_name"] == model.class_names[label]
