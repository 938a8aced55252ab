"""Golden test: a seeded tiny model's losses and detections are pinned, so a
behaviour change anywhere in the detector shows up here rather than as a
silent accuracy change later.

The numbers were produced by this very setup (see ``golden_run``); when a
change is *meant* to alter behaviour, regenerate them with
``python tests/test_detector_golden.py`` and say why in the commit message.
A snapshot only says that nothing changed; that the losses are right is
tested against torchvision in test_detector_loss_parity.py.
"""

import torch

import detector
from detector.modeling.transform import ImageTransform

# Produced on 2026-11-24 (CPU, torch 2.15); they agree to ~2e-5 across thread counts.
GOLDEN_LOSSES = {"loss_rpn_objectness": 0.6954096, "loss_rpn_box": 0.0249294,
                 "loss_classifier": 1.6446141, "loss_box_reg": 0.1688488, "loss_mask": 5.9964948}
GOLDEN_DETECTIONS = {"count": [100, 100], "score_sum": [99.56739, 99.59198],
                     "box_sum": [21197.990, 23642.047], "mask_sum": [56264.03, 43416.94]}


def golden_run():
    torch.manual_seed(0)
    model = detector.fpn_rcnn(4, depth=18, trainable_stages=5,
                              transform=ImageTransform(min_size=None))
    g = torch.Generator().manual_seed(3)
    images = [torch.rand(3, 96, 128, generator=g), torch.rand(3, 80, 112, generator=g)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0], [60.0, 30.0, 120.0, 90.0]]),
         "labels": torch.tensor([1, 3]), "masks": torch.zeros(2, 96, 128, dtype=torch.uint8)},
        {"boxes": torch.tensor([[5.0, 5.0, 70.0, 40.0]]), "labels": torch.tensor([2]),
         "masks": torch.zeros(1, 80, 112, dtype=torch.uint8)},
    ]
    targets[0]["masks"][0, 12:60, 10:50] = 1
    targets[0]["masks"][1, 40:80, 70:110] = 1
    targets[1]["masks"][0, 5:40, 5:70] = 1
    torch.manual_seed(1)  # proposal sampling
    losses = {k: float(v.detach()) for k, v in model.train()(images, targets).items()}
    with torch.no_grad():
        model.roi_heads.box_branch.predictor.cls_score.weight.mul_(50)  # confident detections
    model.configure_inference(score_thresh=0.0)  # candidates of any score: 100 an image
    assert model.inference_settings()["score_thresh"] == 0.0
    detections = model.eval().predict(images)
    summary = {
        "count": [len(d["boxes"]) for d in detections],
        "score_sum": [float(d["scores"].sum()) for d in detections],
        "box_sum": [float(d["boxes"].sum()) for d in detections],
        "mask_sum": [float(d["masks"].sum()) for d in detections],
    }
    return losses, summary


def test_golden_losses_and_detections():
    losses, summary = golden_run()
    assert losses.keys() == GOLDEN_LOSSES.keys()
    for key, value in GOLDEN_LOSSES.items():
        assert abs(losses[key] - value) <= 1e-3 * abs(value), (key, losses[key], value)
    assert summary["count"] == GOLDEN_DETECTIONS["count"]
    for key in ("score_sum", "box_sum", "mask_sum"):
        for got, want in zip(summary[key], GOLDEN_DETECTIONS[key]):
            assert abs(got - want) <= 1e-4 * abs(want), (key, got, want)


if __name__ == "__main__":
    losses, summary = golden_run()
    print("GOLDEN_LOSSES =", losses)
    print("GOLDEN_DETECTIONS =", summary)
