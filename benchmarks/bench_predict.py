"""Inference throughput of the predict path (rcnn-predict) with
the project's Mask R-CNN against the same path with torchvision's
maskrcnn_resnet50_fpn, same weights, same settings, side by side.

    python benchmarks/bench_predict.py [--device cpu|cuda] [--images 8] [--batch-size 2]
        [--weights maskrcnn_resnet50_fpn_coco.pth] [--repeats 3]

Both go through detector.predict.predict (read the files, batch, run the
model, draw every picture, write predictions.json); only the model differs:
``detector.from_torchvision(weights)`` against torchvision's MaskRCNN with
the same state dict. Without --weights both hold the same seeded random
weights with a sharpened classifier, so that each image gets a full set of
confident detections (masks pasted and drawn) as with COCO weights on a
photo. Images: synthetic shapes of 480x640, resized to 800 inside the models
(torchvision's defaults). Reported: images per second, median of the
repeats after one warm-up pass, and the ratio.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

import detector
from detector.data.builders.synthetic import make_synthetic_coco
from detector.predict import find_images, predict
from detector.loading.torchvision_compat import coco_class_names
from detector.weights.files import read_state_dict


class TorchvisionPredictor(torch.nn.Module):
    """torchvision's model behind the interface predict() calls."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.class_names = coco_class_names()
        self.category_ids = None  # labels are COCO's category ids, as in ours
        self.mask_threshold = 0.5  # torchvision's paste threshold, as ours

    def predict(self, images):
        return self.model(images)


def models(weights: str | None) -> tuple[torch.nn.Module, torch.nn.Module]:
    from torchvision.models import resnet50
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3)
    theirs = MaskRCNN(backbone, num_classes=91)
    if weights:
        theirs.load_state_dict(read_state_dict(weights))
    else:
        with torch.no_grad():
            theirs.roi_heads.box_predictor.cls_score.weight.mul_(30)
    ours = detector.from_torchvision("maskrcnn_resnet50_fpn", theirs.state_dict())
    return TorchvisionPredictor(theirs).eval(), ours.eval()


def throughput(model, paths, out: Path, batch_size: int, device: str, repeats: int
               ) -> tuple[float, int]:
    """(images/s, detections per pass) of predict() on ``paths``."""
    results = predict(model, paths, out, batch_size, device)  # warm-up
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        predict(model, paths, out, batch_size, device)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return len(paths) / statistics.median(times), len(results)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--weights", help="a torchvision maskrcnn_resnet50_fpn state dict "
                        "(local file); default: seeded random weights")
    args = parser.parse_args()
    theirs, ours = models(args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        images, _ = make_synthetic_coco(tmp, "val", args.images, (480, 640), "mixed", seed=0)
        paths = find_images(images)
        rows = {}
        fused = copy.deepcopy(ours).fuse()
        # what rcnn-predict runs (channels_last=true fuse=true)
        fast = copy.deepcopy(ours).set_channels_last().fuse()
        for name, model in (("torchvision", theirs), ("ours", ours), ("ours, fused", fused),
                            ("ours, channels-last + fused (rcnn-predict)", fast)):
            rows[name] = throughput(model, paths, Path(tmp) / name, args.batch_size,
                                    args.device, args.repeats)
    weights = f"weights {args.weights}" if args.weights else "random weights"
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
          f"{args.images} images 480x640 (resized to 800), batch {args.batch_size}, "
          f"median of {args.repeats}, {weights}")
    print("| model | images/s | detections | speed-up |")
    print("|---|---|---|---|")
    for name, (rate, count) in rows.items():
        print(f"| {name} | {rate:.3f} | {count} | {rate / rows['torchvision'][0]:.2f}x |")


if __name__ == "__main__":
    main()
