"""Inference throughput of the same Mask R-CNN eager, as a torch.export
program (.pt2) and as ONNX in onnxruntime (CPU), side by side in one run.

    python benchmarks/bench_export.py [--images 4] [--repeats 3] [--size 480 640]
        [--weights maskrcnn_resnet50_fpn_coco.pth] [--threads N]

The model is R50-FPN Mask R-CNN at torchvision's settings (resize to 800,
max 1333) with torchvision's weights (--weights) or, without them, the seeded
random weights with a sharpened classifier of bench_predict.py (a full set of
confident detections per image). Rows: the eager model as rcnn-predict runs it
(channels-last, BatchNorm folded) and plain; the .pt2 that rcnn-export writes
(the same, traced); the .onnx (folded) in onnxruntime with as many threads as
torch uses. Each runs the images one at a time (the exported graphs take one
image); reported: images per second, median of the repeats after one warm-up
pass, the detections of one pass, the ratio to the eager rcnn-predict model,
and how long each export took.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
from bench_predict import models
from timing import median_seconds

from detector.data.builders.synthetic import make_synthetic_coco
from detector.export import ExportedDetector, export
from detector.predict import _read, find_images


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    parser.add_argument("--weights", help="a torchvision maskrcnn_resnet50_fpn state dict "
                        "(local file); default: seeded random weights")
    parser.add_argument("--threads", type=int, help="torch and onnxruntime threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    _, ours = models(args.weights)
    plain = ours.eval()
    fast = copy.deepcopy(plain).set_channels_last().fuse()  # rcnn-predict's model
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        folder, _ = make_synthetic_coco(tmp, "val", args.images, tuple(args.size), "mixed", seed=0)
        images = [_read(p).float() / 255 for p in find_images(folder)]
        runners, export_seconds = {}, {}
        runners["eager, channels-last + fused (rcnn-predict)"] = fast.predict
        runners["eager, plain"] = plain.predict
        for name, model, suffix in (
                (".pt2, channels-last + fused (rcnn-export)", fast, "pt2"),
                (".onnx in onnxruntime, fused (rcnn-export)",
                 copy.deepcopy(plain).fuse(), "onnx")):
            start = time.perf_counter()
            path = export(model, Path(tmp) / f"model.{suffix}")
            export_seconds[name] = time.perf_counter() - start
            runners[name] = ExportedDetector(path, num_threads=torch.get_num_threads()).predict
        rows = {}
        for name, run in runners.items():
            def one_pass(run=run):
                return sum(len(run([image])[0]["scores"]) for image in images)
            count = one_pass()
            seconds = median_seconds(one_pass, args.repeats, cpu)
            rows[name] = (len(images) / seconds, count)
    weights = f"weights {args.weights}" if args.weights else "random weights"
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads, {args.images} "
          f"images {args.size[0]}x{args.size[1]} (resized to 800), one at a time, median of "
          f"{args.repeats}, {weights}")
    base = rows["eager, channels-last + fused (rcnn-predict)"][0]
    print("| model | images/s | detections | vs eager rcnn-predict | export time |")
    print("|---|---|---|---|---|")
    for name, (rate, count) in rows.items():
        took = f"{export_seconds[name]:.0f} s" if name in export_seconds else ""
        print(f"| {name} | {rate:.3f} | {count} | {rate / base:.2f}x | {took} |")


if __name__ == "__main__":
    main()
