"""The LightningModule and DataModule: a few steps of training and a COCO
evaluation on a tiny dataset written here."""

import json
import math
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import pytorch_lightning as pl
import torch
from torchvision.io import write_png

import detector
from detector.training import CocoDataModule, DetectionModule, warmup_then_decay
from detector.modeling.transform import ImageTransform
from shapes import shapes_dataset


def write_coco(root, samples):
    images, annotations = [], []
    (root / "images").mkdir(parents=True)
    for image_id, (image, target) in enumerate(samples, start=1):
        write_png((image * 255).round().to(torch.uint8), str(root / "images" / f"{image_id}.png"))
        images.append({"id": image_id, "file_name": f"{image_id}.png",
                       "height": image.shape[1], "width": image.shape[2]})
        for box, label, mask in zip(target["boxes"], target["labels"], target["masks"]):
            rle = mask_utils.encode(np.asfortranarray(mask.numpy()))
            rle["counts"] = rle["counts"].decode("ascii")
            x1, y1, x2, y2 = box.tolist()
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(label), "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": int(mask.sum()), "iscrowd": 0, "segmentation": rle})
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "rectangle"},
                                               {"id": 2, "name": "ellipse"}]}))
    return {"images": str(root / "images"), "annotations": str(path)}


def test_fit_and_validate_log_losses_and_coco_metrics(tmp_path):
    split = write_coco(tmp_path / "data", shapes_dataset(count=3))
    data = CocoDataModule(split, split, batch_size=2)
    torch.manual_seed(0)
    model = detector.fpn_rcnn(3, depth=18, norm="bn", backbone_width=16, fpn_channels=32,
                              representation_size=64, mask_channels=32,
                              transform=ImageTransform(min_size=None))
    module = DetectionModule(model, lr=0.005, warmup_steps=2)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, num_sanity_val_steps=0,
                         default_root_dir=tmp_path)
    trainer.fit(module, data)
    assert "train/loss_mask" in trainer.logged_metrics
    (metrics,) = trainer.validate(module, data, verbose=False)
    names = [f"val/{t}_{n}" for t in ("bbox", "segm") for n in ("AP", "AP50", "AP75", "APs",
                                                                 "APm", "APl")]
    assert set(names) <= set(metrics) and "val/loss_mask" in metrics

    # the same validation with the ground truth as the detections: the module's
    # path (results, COCO conversion, gathering, COCOeval, logging) scores AP 1,
    # and -1 where an area range holds no object (COCO's "no ground truth")
    real = module.model.detections_and_validation_losses

    def truth_as_detections(images, targets, seed=0):
        _, losses = real(images, targets, seed)
        return [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["boxes"])),
                 "masks": t["masks"][:, None].float()} for t in targets], losses

    module.model.detections_and_validation_losses = truth_as_detections
    (metrics,) = trainer.validate(module, data, verbose=False)
    areas = [a["area"] for a in json.loads(Path(split["annotations"]).read_text())["annotations"]]
    ranges = {"APs": (0, 32 ** 2), "APm": (32 ** 2, 96 ** 2), "APl": (96 ** 2, math.inf)}
    expected = {"AP": 1.0, "AP50": 1.0, "AP75": 1.0}
    expected |= {name: 1.0 if any(low <= a < high for a in areas) else -1.0
                 for name, (low, high) in ranges.items()}
    assert {expected[n] for n in ("APs", "APm", "APl")} == {1.0, -1.0}  # both cases occur
    for iou_type in ("bbox", "segm"):
        got = {name: metrics[f"val/{iou_type}_{name}"] for name in expected}
        assert got == pytest.approx(expected, abs=1e-6), iou_type


def test_warmup_then_decay_schedule():
    cosine = warmup_then_decay(10, 110, "cosine", warmup_factor=0.1)
    assert cosine(0) == pytest.approx(0.1)
    assert cosine(5) == pytest.approx(0.55)
    assert cosine(10) == pytest.approx(1.0)
    assert cosine(60) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert cosine(110) == pytest.approx(0.0)
    step = warmup_then_decay(0, 100, "step", milestones=(0.5, 0.9), gamma=0.1)
    assert [step(s) for s in (0, 49, 50, 89, 90)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    with pytest.raises(ValueError, match="decay must be 'cosine' or 'step', got 'linear'"):
        warmup_then_decay(1, 10, "linear")


@pytest.mark.parametrize("name, kind", [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_optimizers_leave_norms_and_biases_undecayed(tmp_path, name, kind):
    model = detector.fpn_rcnn(3, depth=18, norm="bn", fpn_channels=32, representation_size=64,
                              mask_channels=32)
    module = DetectionModule(model, optimizer=name, lr=0.01, weight_decay=1e-4)
    trainer = pl.Trainer(max_steps=10, accelerator="cpu", logger=False,
                         enable_checkpointing=False, default_root_dir=tmp_path)
    module.trainer = trainer
    config = module.configure_optimizers()
    optimizer = config["optimizer"]
    assert isinstance(optimizer, kind)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 1e-4 and plain["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == trainable
    with pytest.raises(ValueError, match="optimizer must be one of"):
        DetectionModule(model, optimizer="adam")
