"""One training step and one inference pass of the project's Mask R-CNN
R50-FPN against torchvision's maskrcnn_resnet50_fpn, same weights, same
settings, same inputs, side by side.

    python benchmarks/bench_detector.py [--device cpu|cuda] [--size 512] [--repeats 3]

Both models hold the same (seeded, random) weights with frozen BatchNorm, as
when fine-tuning from ImageNet/COCO weights; images are resized to --size on
the shorter side (1333 / 800 * size on the longer). Each model is timed in its
own subprocess so that its peak memory (CPU: the process's peak RSS; CUDA:
torch.cuda.max_memory_allocated) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch


def torchvision_model(size: int):
    from torchvision.models import resnet50
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3)
    return MaskRCNN(backbone, num_classes=91, min_size=size, max_size=int(size * 1333 / 800))


def build(which: str, size: int, weights: str):
    """Each model from the same weights file, the same way: build, then load."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if which == "torchvision":
        model = torchvision_model(size)
        model.load_state_dict(state)
        return model
    import detector
    from detector.transform import ImageTransform

    model = detector.from_torchvision("maskrcnn_resnet50_fpn", state)
    model.transform = ImageTransform(size, int(size * 1333 / 800))
    return model


def inputs(device, images=2):
    g = torch.Generator().manual_seed(1)
    batch, targets = [], []
    for _ in range(images):
        image = torch.rand(3, 480, 640, generator=g)
        boxes = torch.tensor([[40.0, 60.0, 200.0, 300.0], [300.0, 100.0, 600.0, 420.0],
                              [100.0, 320.0, 180.0, 400.0]])
        masks = torch.zeros(3, 480, 640, dtype=torch.uint8)
        for m, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
            m[y1:y2, x1:x2] = 1
        batch.append(image.to(device))
        targets.append({"boxes": boxes.to(device), "labels": torch.tensor([1, 2, 3], device=device),
                        "masks": masks.to(device)})
    return batch, targets


def worker(which: str, device: str, size: int, repeats: int, weights: str) -> dict:
    device = torch.device(device)
    model = build(which, size, weights).to(device)
    images, targets = inputs(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step():
        model.train()
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    def inference():
        model.eval()
        with torch.no_grad():
            model(images)

    def median_time(fn) -> float:
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    result = {"train": median_time(train_step), "inference": median_time(inference)}
    if device.type == "cuda":
        result["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        import resource

        result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if which == "ours":  # inference again with BatchNorm folded into the convolutions
        model.fuse()
        result["inference_fused"] = median_time(inference)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", choices=["ours", "torchvision"], help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.device, args.size, args.repeats, args.weights)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "maskrcnn.pt")
        torch.save(torchvision_model(args.size).state_dict(), weights)
        for which in ("torchvision", "ours"):
            out = subprocess.run(
                [sys.executable, __file__, "--worker", which, "--device", args.device,
                 "--size", str(args.size), "--repeats", str(args.repeats), "--weights", weights],
                check=True, capture_output=True, text=True).stdout
            results[which] = json.loads(out.strip().splitlines()[-1])
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
          f"2 images 480x640 resized to {args.size}, median of {args.repeats}")
    print("| measure | torchvision | ours | ratio |")
    print("|---|---|---|---|")
    tv, ours = results["torchvision"], results["ours"]
    for key, label in (("train", "training step (s)"), ("inference", "inference (s)")):
        print(f"| {label} | {tv[key]:.2f} | {ours[key]:.2f} | {tv[key] / ours[key]:.2f}x faster |")
    print(f"| inference, BatchNorm folded (s) | {tv['inference']:.2f} | "
          f"{ours['inference_fused']:.2f} | {tv['inference'] / ours['inference_fused']:.2f}x "
          "faster |")
    print(f"| peak memory (MB) | {tv['peak_mb']:.0f} | {ours['peak_mb']:.0f} | "
          f"{ours['peak_mb'] / tv['peak_mb']:.2f}x of torchvision's |")


if __name__ == "__main__":
    main()
