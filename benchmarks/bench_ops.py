"""Times the project's ROI ops against torchvision's, side by side in one run.

    python benchmarks/bench_ops.py                  # CPU
    python benchmarks/bench_ops.py --device cuda    # GPU, plus the deterministic backward

Shapes are Mask R-CNN's: 2 images, 256 channels, a stride-16 map of 50x68
(an 800x1088 image), 512 boxes per image, sampling ratio 2; the box head pools
7x7, the mask head 14x14; "large" is the same on a 100x136 map (stride 8).
Each cell is the median over --repeats runs after warm-up. "speed-up" is
torchvision's time divided by ours (> 1: ours is faster).
"""

from __future__ import annotations

import argparse

import torch
import torchvision
from timing import median_seconds

import ops

STRIDE_16 = dict(height=50, width=68, scale=1 / 16)
STRIDE_8 = dict(height=100, width=136, scale=1 / 8)
SHAPES = [
    ("box head 7x7", STRIDE_16, 7),
    ("mask head 14x14", STRIDE_16, 14),
    ("large map 7x7", STRIDE_8, 7),
    ("large map 14x14", STRIDE_8, 14),
]


def make_case(device, height, width, scale, images=2, channels=256, per_image=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(images, channels, height, width, generator=g).to(device)
    img_h, img_w = height / scale, width / scale
    k = images * per_image
    w = 16 + (img_w * 0.5 - 16) * torch.rand(k, generator=g)
    h = 16 + (img_h * 0.5 - 16) * torch.rand(k, generator=g)
    x1 = (img_w - w) * torch.rand(k, generator=g)
    y1 = (img_h - h) * torch.rand(k, generator=g)
    index = torch.arange(images).repeat_interleave(per_image).float()
    rois = torch.stack([index, x1, y1, x1 + w, y1 + h], dim=1).to(device)
    return x, rois


def timed(fn, device, repeats):
    """Median milliseconds of fn after two warm-up calls."""
    return median_seconds(fn, repeats, device, warmup=2) * 1e3


def forward_backward(op, x, rois, grad):
    x.grad = None
    op(x, rois).backward(grad)


def candidates(size, scale):
    """(name, ours, torchvision's or None)."""
    return [
        ("roi_align avg",
         lambda x, r: ops.roi_align(x, r, size, scale, 2),
         lambda x, r: torchvision.ops.roi_align(x, r, size, scale, 2)),
        ("roi_pool",
         lambda x, r: ops.roi_pool(x, r, size, scale),
         lambda x, r: torchvision.ops.roi_pool(x, r, size, scale)),
        ("roi_align max", lambda x, r: ops.roi_align(x, r, size, scale, 2, mode="max"), None),
        ("roi_warp max", lambda x, r: ops.roi_warp(x, r, size, scale, 2, "max"), None),
    ]


def deterministic(fn):
    def run():
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)
        try:
            fn()
        finally:
            torch.use_deterministic_algorithms(previous)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true",
                        help="one shape, 16 channels, 32 boxes: checks the script, times nothing")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if cuda
             else f", {torch.get_num_threads()} threads"))
    header = ["shape", "op", "pass", "ours ms", "torchvision ms", "speed-up"]
    if cuda:
        header += ["det. bwd ms", "det./default"]
    rows = [header]
    for shape_name, shape, size in SHAPES[:1] if args.smoke else SHAPES:
        x, rois = make_case(device, shape["height"], shape["width"], shape["scale"],
                            **(dict(channels=16, per_image=16) if args.smoke else {}))
        xg = x.clone().requires_grad_(True)
        for op_name, ours, theirs in candidates(size, shape["scale"]):
            grad = torch.randn_like(ours(x, rois))
            for pass_name in ("forward", "forward+backward"):
                if pass_name == "forward":
                    run_ours = lambda: ours(x, rois)  # noqa: E731
                    run_theirs = theirs and (lambda: theirs(x, rois))
                else:
                    run_ours = lambda: forward_backward(ours, xg, rois, grad)  # noqa: E731
                    run_theirs = theirs and (lambda: forward_backward(theirs, xg, rois, grad))
                t_ours = timed(run_ours, device, args.repeats)
                t_theirs = timed(run_theirs, device, args.repeats) if theirs else None
                row = [shape_name, op_name, pass_name, f"{t_ours:.2f}",
                       f"{t_theirs:.2f}" if t_theirs else "-",
                       f"{t_theirs / t_ours:.2f}x" if t_theirs else "-"]
                if cuda:
                    if pass_name == "forward+backward":
                        t_det = timed(deterministic(run_ours), device, args.repeats)
                        row += [f"{t_det:.2f}", f"{t_det / t_ours:.2f}x"]
                    else:
                        row += ["-", "-"]
                rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


if __name__ == "__main__":
    main()
