"""Checks at the model's edge, with messages that name the image and the value."""

from __future__ import annotations

import math

import torch
from torch import Tensor


# how far above 1 (or below 0) a [0, 1] image may reach: resampling (bicubic,
# antialiased) overshoots a little; a 0..255 image is far above it
RANGE_SLACK = 0.01


def check_images(images: list[Tensor]) -> None:
    """Images must be a list of float [3, H, W] tensors in [0, 1] with H, W > 0.
    Integer images (uint8 0..255) are refused, with the conversion to make;
    float images of any precision are accepted (ImageTransform converts them
    to the model's dtype). The values are checked in eager runs only (one
    min/max per image; an exported or compiled graph keeps no data-dependent
    check): values outside [0, 1] mean a 0..255 image or one already
    normalized, both of which would give junk detections."""
    if not isinstance(images, (list, tuple)) or not images:
        raise TypeError("images must be a non-empty list of [3, H, W] tensors")
    for i, image in enumerate(images):
        if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"images[{i}] must be a [3, H, W] tensor, got {shape}")
        if not image.is_floating_point():
            raise TypeError(f"images[{i}] must be a float tensor in [0, 1], got {image.dtype}; "
                            "convert a 0..255 image with image.float() / 255")
        if image.shape[1] == 0 or image.shape[2] == 0:
            raise ValueError(f"images[{i}] is empty: {image.shape[1]}x{image.shape[2]} (h x w); "
                             "an image needs at least one row and one column")
    if torch.compiler.is_exporting() or torch.compiler.is_compiling():
        return
    bounds = torch.stack([torch.stack(torch.aminmax(image.detach())).float()
                          for image in images]).tolist()
    for i, (low, high) in enumerate(bounds):
        if math.isnan(low) or math.isnan(high) or math.isinf(low) or math.isinf(high):
            raise ValueError(f"images[{i}] has non-finite values (NaN or infinity)")
        if low < -RANGE_SLACK:
            raise ValueError(f"images[{i}] has values down to {low:.4g}: the model takes float "
                             "images in [0, 1] and normalizes them itself (give it the image "
                             "before normalization)")
        if high > 1 + RANGE_SLACK:
            raise ValueError(f"images[{i}] has values up to {high:.4g}: the model takes float "
                             "images in [0, 1]; divide a 0..255 image by 255")


def check_targets(images: list[Tensor], targets: list[dict[str, Tensor]], num_classes: int,
                  with_masks: bool) -> None:
    if len(targets) != len(images):
        raise ValueError(f"got {len(targets)} targets for {len(images)} images")
    for i, (image, target) in enumerate(zip(images, targets)):
        height, width = image.shape[-2:]
        boxes, labels = target.get("boxes"), target.get("labels")
        if boxes is None or labels is None:
            raise ValueError(f"targets[{i}] needs 'boxes' and 'labels'")
        if boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
            raise ValueError(f"targets[{i}]['boxes'] must be a float [N, 4] tensor, "
                             f"got {boxes.dtype} {tuple(boxes.shape)}")
        if labels.dtype != torch.int64 or labels.shape != boxes.shape[:1]:
            raise ValueError(f"targets[{i}]['labels'] must be int64 [{boxes.shape[0]}], "
                             f"got {labels.dtype} {tuple(labels.shape)}")
        if boxes.numel():
            if not torch.isfinite(boxes).all():
                raise ValueError(f"targets[{i}]['boxes'] has non-finite values")
            bad = torch.nonzero((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
            if bad.numel():
                j = int(bad[0])
                raise ValueError(f"targets[{i}]['boxes'][{j}] = {boxes[j].tolist()} is degenerate "
                                 "(x2 <= x1 or y2 <= y1)")
            outside = torch.nonzero((boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width)
                                    | (boxes[:, 3] > height))
            if outside.numel():
                j = int(outside[0])
                raise ValueError(f"targets[{i}]['boxes'][{j}] = {boxes[j].tolist()} lies outside "
                                 f"the {height}x{width} image")
            if labels.min() < 1 or labels.max() >= num_classes:
                raise ValueError(f"targets[{i}]['labels'] must be in [1, {num_classes - 1}], got "
                                 f"{labels.tolist()}")
        flags = target.get("has_mask")
        if flags is not None and (flags.dtype != torch.bool or flags.shape != boxes.shape[:1]):
            raise ValueError(f"targets[{i}]['has_mask'] must be bool [{boxes.shape[0]}], "
                             f"got {flags.dtype} {tuple(flags.shape)}")
        if with_masks:
            masks = target.get("masks")
            if masks is None or masks.shape != (boxes.shape[0], height, width):
                got = None if masks is None else tuple(masks.shape)
                raise ValueError(f"targets[{i}]['masks'] must be [{boxes.shape[0]}, {height}, "
                                 f"{width}], got {got}")
