"""A checkpoint written before detector/ was laid out by role still loads.

tests/data/checkpoint_before_layout/ holds a tiny Mask R-CNN saved by that
code (its specification names detector.builders.fpn_rcnn and
detector.transform.ImageTransform) and the detections it predicted then on one
image (make.py wrote both). detector.load must build it, load every weight and
predict the same detections today.
"""

from pathlib import Path

import torch

import detector

DATA = Path(__file__).resolve().parent / "data" / "checkpoint_before_layout"


def _matched(expected: dict, got: dict) -> None:
    """Every expected detection has one in ``got`` with the same label, box,
    score and mask (order among near-equal scores may differ)."""
    assert len(got["scores"]) == len(expected["scores"])
    free = list(range(len(got["scores"])))
    for i in range(len(expected["scores"])):
        found = [j for j in free
                 if got["labels"][j] == expected["labels"][i]
                 and torch.allclose(got["boxes"][j], expected["boxes"][i], atol=1e-3)
                 and torch.allclose(got["scores"][j], expected["scores"][i], atol=1e-5)
                 and torch.allclose(got["masks"][j], expected["masks"][i], atol=1e-4)]
        assert found, f"expected detection {i} ({expected['boxes'][i].tolist()}) not predicted"
        free.remove(found[0])


def test_checkpoint_of_the_old_layout_loads_and_predicts_as_it_did():
    checkpoint = DATA / "mask_rcnn.ckpt"
    spec = torch.load(checkpoint, weights_only=True)["hyper_parameters"]["model"]
    assert spec["_target_"] == "detector.builders.fpn_rcnn"  # the old path, as written then
    assert spec["transform"]["_target_"] == "detector.transform.ImageTransform"
    expected = torch.load(DATA / "expected.pt", weights_only=True)
    model = detector.load(checkpoint)
    assert isinstance(model, detector.GeneralizedRCNN)
    with torch.no_grad():
        [got] = model.predict([expected["image"].float() / 255])
    _matched(expected, got)
