"""Random feature maps and boxes that exercise every corner of the ROI ops."""

from __future__ import annotations

import torch


def feature_map(batch=3, channels=16, height=13, width=17, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, height, width, generator=g, dtype=dtype)


def boxes(batch, height, width, spatial_scale, dtype=torch.float64, seed=0, per_kind=4):
    """Rows (batch_index, x1, y1, x2, y2) in image pixels for a map of
    height x width cells at spatial_scale: ordinary boxes, boxes partly and
    wholly outside the image, zero-size, inverted and huge boxes."""
    g = torch.Generator().manual_seed(seed)
    img_h, img_w = height / spatial_scale, width / spatial_scale

    def rand(n, lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)

    n = per_kind
    kinds = []
    # ordinary: inside the image
    x1, y1 = rand(n, 0, img_w * 0.7), rand(n, 0, img_h * 0.7)
    kinds.append((x1, y1, x1 + rand(n, 1, img_w * 0.5), y1 + rand(n, 1, img_h * 0.5)))
    # small: a few feature cells or less
    x1, y1 = rand(n, 0, img_w * 0.9), rand(n, 0, img_h * 0.9)
    cell = 1 / spatial_scale
    kinds.append((x1, y1, x1 + rand(n, 0.1, 3) * cell, y1 + rand(n, 0.1, 3) * cell))
    # partly outside
    x1, y1 = rand(n, -img_w * 0.4, img_w * 0.2), rand(n, -img_h * 0.4, img_h * 0.2)
    kinds.append((x1, y1, rand(n, img_w * 0.6, img_w * 1.4), rand(n, img_h * 0.6, img_h * 1.4)))
    # wholly outside (right/below and left/above)
    x1, y1 = rand(n, img_w * 1.1, img_w * 1.5), rand(n, -img_h * 0.8, img_h * 1.5)
    kinds.append((x1, y1, x1 + rand(n, 1, img_w * 0.3), y1 + rand(n, 1, img_h * 0.3)))
    x2, y2 = rand(n, -img_w * 0.6, -img_w * 0.1), rand(n, -img_h * 0.6, -img_h * 0.1)
    kinds.append((x2 - rand(n, 1, img_w * 0.3), y2 - rand(n, 1, img_h * 0.3), x2, y2))
    # zero-size and inverted
    x1, y1 = rand(n, 0, img_w), rand(n, 0, img_h)
    kinds.append((x1, y1, x1.clone(), y1.clone()))
    kinds.append((x1, y1, x1 - rand(n, 0, img_w * 0.2), y1 - rand(n, 0, img_h * 0.2)))
    # huge: several times the image
    kinds.append((rand(n, -img_w, 0), rand(n, -img_h, 0), rand(n, img_w, 2 * img_w),
                  rand(n, img_h, 2 * img_h)))
    cols = [torch.cat(c) for c in zip(*kinds)]
    index = torch.randint(0, batch, (cols[0].numel(),), generator=g).to(torch.float64)
    return torch.stack([index, *cols], dim=1).to(dtype)
