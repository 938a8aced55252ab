"""Times the deterministic backward of the ROI ops against the default one
(the raw backward ops, called directly), for one large case:

    python benchmarks/bench_deterministic_backward.py [--device cpu|cuda] [--repeats 3]

512 boxes (16 pixels to half the image) on a 1x256x200x200 map at scale 1/4,
7x7 bins, sampling ratio 2. The CPU runs the same deterministic algorithm as
the CUDA backend, so the ratio shows whether its work grows like the default
backward's (it should) or like map size times boxes (it must not).
"""

from __future__ import annotations

import argparse

import torch
from timing import median_seconds

import ops


def make_case(channels=256, size=200, scale=1 / 4, num_boxes=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, size, size, generator=g)
    image = size / scale
    w = 16 + (image * 0.5 - 16) * torch.rand(num_boxes, generator=g)
    h = 16 + (image * 0.5 - 16) * torch.rand(num_boxes, generator=g)
    x1 = (image - w) * torch.rand(num_boxes, generator=g)
    y1 = (image - h) * torch.rand(num_boxes, generator=g)
    rois = torch.stack([torch.zeros(num_boxes), x1, y1, x1 + w, y1 + h], dim=1)
    return x, rois


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true",
                        help="16 channels, 32 boxes: checks the script, times nothing")
    args = parser.parse_args()
    device = torch.device(args.device)
    ops.load()
    roi_ops = torch.ops.roi_ops
    scale, size, ratio = 1 / 4, 7, 2
    case = make_case(scale=scale, **(dict(channels=16, num_boxes=32) if args.smoke else {}))
    x, rois = (t.to(device) for t in case)
    n, c, h, w = x.shape
    grad = torch.randn(rois.shape[0], c, size, size,
                       generator=torch.Generator().manual_seed(1)).to(device)
    _, argmax = roi_ops.roi_pool(x, rois, scale, size, size)
    cases = {
        "roi_align avg": lambda det: roi_ops._bilinear_backward(
            grad, rois, None, scale, n, c, h, w, ratio, 1, False, det),
        "roi_align max": lambda det: roi_ops._bilinear_backward(
            grad, rois, x, scale, n, c, h, w, ratio, 1, True, det),
        "roi_pool": lambda det: roi_ops._roi_pool_backward(
            grad, rois, argmax, scale, n, c, h, w, det),
    }
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"cpu, {torch.get_num_threads()} threads")
    print(f"{where}, x {tuple(x.shape)}, {rois.shape[0]} boxes")
    print(f"| {'op':<13} | default ms | deterministic ms | ratio |")
    print(f"|{'-' * 15}|------------|------------------|-------|")
    for name, backward in cases.items():
        default = median_seconds(lambda: backward(False), args.repeats, device) * 1e3
        det = median_seconds(lambda: backward(True), args.repeats, device) * 1e3
        print(f"| {name:<13} | {default:10.1f} | {det:16.1f} | {det / default:5.2f} |", flush=True)


if __name__ == "__main__":
    main()
