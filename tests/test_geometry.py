"""The geometry rule (docs/geometry.md): the model resizes images itself and
returns detections in the frame of the images it was given, so evaluation is
right at any resize factor.

The oracle: ground truth read straight from the annotation json (not through
the dataset's targets), moved into the resized frame by hand, and handed to
the model's evaluation path as if it were its detections. Through the real
DetectionModule validation (data pipeline, model transform, mapping back,
COCO results, COCOeval) it must score AP 1.0 for boxes and masks at every
resize factor; any frame error in that path scores far lower."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

import ops
from detector.modeling.rcnn import GeneralizedRCNN
from detector.training import DetectionModule, SyntheticDataModule
from detector.modeling.transform import ImageTransform

PATCH = 112  # mask patch size: fine enough for IoU > 0.95 after pasting


class _Features(nn.Module):
    def forward(self, batch):
        return {"image": batch}


class _NoProposals(nn.Module):
    def forward(self, features, sizes, batch_size, targets=None):
        return [None] * len(sizes), {}


def _patches(masks, boxes):
    """Box-relative mask patches [N, 1, PATCH, PATCH] that paste_masks puts
    back onto ``masks``. paste_masks follows torchvision's convention (the
    patch, padded by one cell, covers the whole pixels of its grown, truncated
    box, one pixel wider than the box), so the patches are cut, by ROI Align,
    from the region the paste will cover."""
    scale = (PATCH + 2) / PATCH
    center, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2 * scale
    grown = torch.cat([center - half, center + half], 1).to(torch.int64).float()
    low, high = grown[:, :2], grown[:, 2:] + 1  # pixels [low, high) of the padded patch
    cell = (high - low) / (PATCH + 2)
    region = torch.cat([low + cell, high - cell], 1)
    rois = torch.cat([torch.arange(len(boxes), dtype=torch.float32)[:, None], region], 1)
    return ops.roi_align(masks[:, None], rois, PATCH, 1.0, 2, aligned=True)


class _GroundTruthHeads(nn.Module):
    """Returns, for the k-th image it sees, the k-th image's ground truth of
    ``dataset`` (in loader order), in the resized frame the model works in:
    boxes scaled by the resize factor, masks as box-relative patches, as the
    mask head's output is."""

    has_masks = True

    def __init__(self, dataset):
        super().__init__()
        self.dataset, self.seen = dataset, 0

    def forward(self, features, proposals, image_sizes, targets=None):
        detections = []
        for size in image_sizes:
            image_id = self.dataset.image_ids[self.seen]
            self.seen += 1
            coco = self.dataset.coco
            info = coco.imgs[image_id]
            anns = coco.imgToAnns[image_id]
            xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
            boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
            masks = torch.from_numpy(np.stack([coco.annToMask(a) for a in anns])).float()
            patches = _patches(masks, boxes)
            scale = torch.tensor([size[1] / info["width"], size[0] / info["height"]] * 2)
            detections.append({
                "boxes": boxes * scale,
                "labels": torch.tensor([self.dataset.category_to_label[a["category_id"]]
                                        for a in anns]),
                "scores": torch.linspace(1.0, 0.5, len(anns)),
                "masks": patches,
            })
        return detections, {}


def _oracle_metrics(tmp_path, image_size, min_size):
    data = SyntheticDataModule(str(tmp_path / "data"), num_train=1, num_val=4, num_test=0,
                               image_size=image_size, seed=3, batch_size=2)
    heads = _GroundTruthHeads(data.dataset("val"))
    model = GeneralizedRCNN(_Features(), _NoProposals(), heads,
                            ImageTransform(min_size=min_size, max_size=None), 7)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    module = DetectionModule(model, val_loss=False)  # a stand-in: detections, no losses
    trainer.validate(module, data, verbose=False)
    assert heads.seen == 4
    return module.metrics["val"]


@pytest.mark.parametrize("image_size", [(96, 160), (160, 96)], ids=["landscape", "portrait"])
@pytest.mark.parametrize("factor", [0.6, 1.0, 1.7])
def test_ground_truth_as_detections_scores_one_at_any_resize(tmp_path, image_size, factor):
    min_size = round(factor * min(image_size))
    metrics = _oracle_metrics(tmp_path, image_size, min_size)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == pytest.approx(1.0), (iou_type, metrics)


def test_the_oracle_catches_a_frame_error(tmp_path, monkeypatch):
    """The same oracle with the mapping back skipped scores far below 1: a
    frame error cannot pass the test above unnoticed."""
    monkeypatch.setattr(ImageTransform, "to_original",
                        staticmethod(lambda detections, sizes, originals: [
                            {**d, "masks": torch.zeros(len(d["boxes"]), 1, *o)}
                            for d, o in zip(detections, originals)]))
    metrics = _oracle_metrics(tmp_path, (96, 160), 163)
    assert metrics["bbox"]["AP"] < 0.5


def test_scale_jitter_in_training_last_size_in_evaluation():
    transform = ImageTransform(min_size=[64, 80, 96], max_size=None)
    image = torch.rand(3, 48, 64)
    boxes = torch.tensor([[8.0, 4.0, 40.0, 44.0]])
    masks = torch.zeros(1, 48, 64, dtype=torch.uint8)
    masks[0, 4:44, 8:40] = 1
    torch.manual_seed(0)
    shorter = set()
    for _ in range(30):
        _, sizes, (target,) = transform.train()([image], [{"boxes": boxes, "masks": masks}])
        (h, w), = sizes
        shorter.add(h)
        factor = h / 48
        assert abs(w - 64 * factor) < 1  # the aspect ratio is kept
        ratios = torch.tensor([w / 64, h / 48, w / 64, h / 48])
        torch.testing.assert_close(target["boxes"], boxes * ratios)  # the targets follow
        assert target["masks"].shape == (1, h, w)
        assert target["masks"].sum() == pytest.approx(float(masks.sum()) * factor ** 2, rel=0.1)
    assert shorter == {64, 80, 96}
    _, sizes, _ = transform.eval()([image])
    assert sizes == [(96, 128)] and transform.min_size == 96


@pytest.mark.parametrize("min_size, max_size, message", [
    (0, None, "min_size must be a positive integer"), ([], None, "min_size must be"),
    (64.5, None, "min_size must be"), (64, -1, "max_size must be a positive integer"),
])
def test_bad_sizes_are_named(min_size, max_size, message):
    with pytest.raises(ValueError, match=message):
        ImageTransform(min_size=min_size, max_size=max_size)


def test_detections_come_back_in_the_given_frame():
    """An untrained model resizing a 60x100 image to 120x200: boxes inside the
    given image, masks of its size."""
    import detector

    torch.manual_seed(0)
    model = detector.fpn_rcnn(3, depth=18, norm="bn", trainable_stages=5,
                              transform=ImageTransform(min_size=120, max_size=None)).eval()
    model.configure_inference(score_thresh=0.0)
    (result,) = model.predict([torch.rand(3, 60, 100)])
    assert len(result["boxes"]) > 0
    assert result["masks"].shape[1:] == (1, 60, 100)
    assert (result["boxes"][:, 2] <= 100 + 1e-3).all() and (result["boxes"][:, 3] <= 60 + 1e-3).all()
