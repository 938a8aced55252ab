"""Batches grouped by orientation against mixed batches: the padding the
model's batch carries and the training step time, on a COCO-format dataset
(the coins data by default: ``python -m detector.data.builders.coins data/coins``).

    python benchmarks/bench_grouping.py [--root data/coins/coins-v1] [--epochs 20] [--augment crop]

Padding is exact, from the sizes of the images the training loader serves
(after --augment: flip keeps the file's size, crop and lsj change it; the
grouping goes by the file's): each image resized as the model resizes it
(shorter side --min-size, longer at most --max-size), the batch padded to the
largest height and width rounded up to 32, over --epochs epochs of the
training order. Time is the sum of the training steps (forward, backward,
AdamW) of the CPU default model (configs/backbone/resnet18_fpn_cpu.yaml) over
one whole epoch of the batches the datamodule serves (the same images either
way), after a warm-up step; --no-time measures the padding only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from detector.data.augment import PRESETS, preset
from detector.modeling.builders import fpn_rcnn
from detector.modeling.transform import ImageTransform
from detector.training import CocoDataModule


def _split(root: Path, name: str) -> dict:
    return {"images": str(root / name / "images"), "annotations": str(root / name /
                                                                       "annotations.json")}


def padding(data: CocoDataModule, transform: ImageTransform, epochs: int) -> float:
    """The fraction of the padded batches' pixels that are padding."""
    loader = data.train_dataloader()
    d = transform.size_divisible
    real = padded = 0
    for epoch in range(epochs):
        batches = loader.batch_sampler  # the DataLoader's own, or GroupedBatchSampler
        getattr(batches, "sampler", loader.sampler).set_epoch(epoch)
        for images, _ in loader:
            resized = []
            for image in images:
                h, w = image.shape[-2:]
                scale = transform.scale_for((h, w))
                resized.append((int(h * scale), int(w * scale)))
            height = -(-max(h for h, _ in resized) // d) * d
            width = -(-max(w for _, w in resized) // d) * d
            real += sum(h * w for h, w in resized)
            padded += len(resized) * height * width
    return 1 - real / padded


def epoch_time(data: CocoDataModule, args) -> float:
    """Seconds of training steps over one whole epoch (the same images either way), after
    one untimed warm-up step."""
    torch.manual_seed(0)
    model = fpn_rcnn(2, depth=18, backbone_width=32, norm="bn", trainable_stages=5,
                     fpn_channels=64, representation_size=256, mask_channels=64,
                     anchor_sizes=[16, 32, 64, 128, 256],
                     transform=ImageTransform(args.min_size, args.max_size))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(images, targets):
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    loader = data.train_dataloader()
    step(*next(iter(loader)))
    total = 0.0
    for images, targets in loader:
        start = time.perf_counter()
        step(images, targets)
        total += time.perf_counter() - start
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="data/coins/coins-v1", type=Path)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--min-size", type=int, default=224)
    parser.add_argument("--max-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--augment", default="flip", choices=PRESETS,
                        help="the training augmentation (configs/augment/)")
    parser.add_argument("--no-time", action="store_true", help="measure the padding only")
    args = parser.parse_args()
    transform = ImageTransform(args.min_size, args.max_size)
    print(f"{args.root}: batch {args.batch_size}, min_size {args.min_size}, max_size "
          f"{args.max_size}, augment={args.augment}, {torch.get_num_threads()} threads")
    print("| batches | padding (share of the batch's pixels) | one epoch's steps, s |")
    print("|---|---|---|")
    for grouped in (False, True):
        data = CocoDataModule(_split(args.root, "train"), _split(args.root, "val"),
                              batch_size=args.batch_size, num_workers=0,
                              group_by_aspect_ratio=grouped,
                              augment=preset(args.augment, lsj_size=args.max_size))
        label = "grouped by orientation" if grouped else "mixed (default)"
        seconds = "-" if args.no_time else f"{epoch_time(data, args):.1f}"
        print(f"| {label} | {padding(data, transform, args.epochs):.1%} | {seconds} |")


if __name__ == "__main__":
    main()
