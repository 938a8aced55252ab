"""detector.load: a checkpoint written by training gives back the same model
(architecture from the saved specification, class names, preprocessing,
weights); files that would run code when unpickled, files of another
architecture and files that are not checkpoints are refused with errors that
say why."""

import os

import pytest
import torch

import detector

from detections import assert_same_detections

def test_load_gives_back_the_trained_model(trained):
    path, module, data = trained
    model = detector.load(path)
    assert not model.training
    assert model.class_names == data.class_names == module.model.class_names
    assert model.num_classes == 7
    # the preprocessing it was trained with
    assert (model.transform.min_size, model.transform.max_size) == (96, 128)
    image, _ = data.dataset("val")[0]
    module.model.eval()
    with torch.no_grad():
        expected = module.model.predict([image])[0]
        got = model.predict([image])[0]
    assert_same_detections(got, expected, score_atol=1e-5, box_atol=1e-3, mask_atol=1e-5)


def test_a_checkpoint_loads_without_the_file_its_backbone_started_from(trained, tmp_path):
    """Every weight comes from the checkpoint: the ImageNet file the backbone
    was initialised from (model.backbone_weights) is not read again, and may
    be missing on this machine (detector.load, and rcnn-evaluate's model)."""
    from detector.training.checkpoint_model import model_to_evaluate

    path, module, data = trained
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["model"]["backbone_weights"] = str(tmp_path / "gone.pth")
    moved = tmp_path / "moved.ckpt"
    torch.save(checkpoint, moved)
    image, _ = data.dataset("val")[0]
    module.model.eval()
    with torch.no_grad():
        expected = module.model.predict([image])[0]
        got = detector.load(moved).predict([image])[0]
    assert_same_detections(got, expected, score_atol=1e-5, box_atol=1e-3, mask_atol=1e-5)
    spec, _ = model_to_evaluate(str(moved), checkpoint["hyper_parameters"]["model"], None)
    assert spec["backbone_weights"] is None


class _RunsCode:
    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_a_file_that_runs_code_is_refused(tmp_path):
    payload = _RunsCode()
    payload.marker = str(tmp_path / "code-ran")
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": payload}, path)
    with pytest.raises(ValueError, match="refused to load .*evil.ckpt.*run as code"):
        detector.load(path)
    assert not (tmp_path / "code-ran").exists()


def test_another_architecture_names_the_keys(trained, tmp_path):
    path, _, _ = trained
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["model"]["fpn_channels"] = 48
    other = tmp_path / "other.ckpt"
    torch.save(checkpoint, other)
    with pytest.raises(ValueError, match=r"weights in .*other.ckpt do not fit GeneralizedRCNN: "
                                         r"shape mismatch .* backbone\.fpn\."):
        detector.load(other)
    checkpoint["hyper_parameters"]["model"].update(fpn_channels=32, masks=False)
    torch.save(checkpoint, other)
    with pytest.raises(ValueError, match=r"unexpected \d+ keys: roi_heads\.mask_branch"):
        detector.load(other)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*missing.ckpt"):
        detector.load(tmp_path / "missing.ckpt")
    weights = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1)}, weights)
    with pytest.raises(ValueError, match="not a checkpoint of this project"):
        detector.load(weights)
    no_spec = tmp_path / "no_spec.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 0.1}}, no_spec)
    with pytest.raises(ValueError, match="no complete model specification"):
        detector.load(no_spec)


def test_load_overrides_the_preprocessing_and_inference_settings(trained):
    path, _, _ = trained
    model = detector.load(path, transform={"min_size": 192, "max_size": 400},
                          inference={"score_thresh": 0.3, "detections_per_image": 7})
    assert (model.transform.min_size, model.transform.max_size) == (192, 400)
    assert model.inference_settings()["score_thresh"] == 0.3
    assert model.inference_settings()["detections_per_image"] == 7
    kept = detector.load(path, transform={"min_size": None}, inference={"score_thresh": None})
    assert kept.transform.min_size == 96  # None keeps the checkpoint's
    assert kept.inference_settings()["score_thresh"] == 0.05
