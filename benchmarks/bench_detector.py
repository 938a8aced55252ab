"""One training step and one inference pass of the project's Mask R-CNN
R50-FPN against torchvision's maskrcnn_resnet50_fpn, same weights, same
settings, same inputs, side by side.

    python benchmarks/bench_detector.py [--device cpu|cuda] [--size 512] [--repeats 3]
                                        [--images 2]

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
import subprocess
import sys
import tempfile

import torch
from timing import median_seconds


def torchvision_model(size: int):
    from torchvision.models import resnet50
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3)
    return MaskRCNN(backbone, num_classes=91, min_size=size, max_size=int(size * 1333 / 800))


# Each variant is timed in its own process: (label, model, channels-last).
VARIANTS = {"torchvision": ("torchvision", "torchvision", False),
            "ours": ("ours", "ours", False),
            "ours_cl": ("ours, channels-last", "ours", True),
            "torchvision_cl": ("torchvision, channels-last", "torchvision", True)}


def build(which: str, size: int, weights: str, channels_last: bool):
    """Each model from the same weights file, the same way: build, then load."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if which == "torchvision":
        model = torchvision_model(size)
        model.load_state_dict(state)
        if channels_last:  # the weights and, through a pre-hook, each batch
            model.to(memory_format=torch.channels_last)
            model.backbone.register_forward_pre_hook(
                lambda _, args: (args[0].contiguous(memory_format=torch.channels_last),))
        return model
    import detector
    from detector.modeling.transform import ImageTransform

    model = detector.from_torchvision("maskrcnn_resnet50_fpn", state)
    model.transform = ImageTransform(size, int(size * 1333 / 800))
    return model.set_channels_last(channels_last)


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


def worker(variant: str, device: str, size: int, repeats: int, weights: str,
           images: int) -> dict:
    _, which, channels_last = VARIANTS[variant]
    device = torch.device(device)
    model = build(which, size, weights, channels_last).to(device)
    images, targets = inputs(device, images)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)

    def train_step():
        model.train()
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    def inference(m=model):
        m.eval()
        with torch.no_grad():
            return m(images)

    def median_time(fn) -> float:
        return median_seconds(fn, repeats, device)

    # Inference first, on the weights as loaded: a training step changes them,
    # and with them how many detections reach the mask head.
    result = {"inference": median_time(inference),
              "detections": sum(len(d["boxes"]) for d in inference())}
    result["train"] = median_time(train_step)
    if device.type == "cuda":
        result["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        import resource

        result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if which == "ours":  # a fresh copy of the weights, BatchNorm folded into the convolutions
        fused = build(which, size, weights, channels_last).to(device).fuse()
        result["inference_fused"] = median_time(lambda: inference(fused))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=2, help="images in the batch")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS)[1:],
                        default=["ours", "ours_cl"],
                        help="what is timed against torchvision's model (default: ours, ours_cl)")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.device, args.size, args.repeats, args.weights,
                                args.images)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "maskrcnn.pt")
        torch.save(torchvision_model(args.size).state_dict(), weights)
        for variant in ["torchvision", *args.variants]:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", variant, "--device", args.device,
                 "--size", str(args.size), "--repeats", str(args.repeats), "--weights", weights,
                 "--images", str(args.images)],
                check=True, capture_output=True, text=True).stdout
            results[variant] = json.loads(out.strip().splitlines()[-1])
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
          f"{args.images} images 480x640 resized to {args.size}, median of {args.repeats}; ratios against "
          "torchvision's model (NCHW)")
    tv = results.pop("torchvision")
    print("| model | training step (s) | inference (s) | inference, BatchNorm folded (s) "
          "| peak memory (MB) | detections |")
    print("|---|---|---|---|---|---|")
    print(f"| torchvision | {tv['train']:.2f} | {tv['inference']:.2f} | | {tv['peak_mb']:.0f} "
          f"| {tv['detections']} |")
    for variant, r in results.items():
        fused = r.get("inference_fused")
        folded = (f"{fused:.2f} ({tv['inference'] / fused:.2f}x)" if fused else "")
        print(f"| {VARIANTS[variant][0]} | {r['train']:.2f} ({tv['train'] / r['train']:.2f}x) "
              f"| {r['inference']:.2f} ({tv['inference'] / r['inference']:.2f}x) | {folded} "
              f"| {r['peak_mb']:.0f} ({r['peak_mb'] / tv['peak_mb']:.2f}x) | {r['detections']} |")


if __name__ == "__main__":
    main()
