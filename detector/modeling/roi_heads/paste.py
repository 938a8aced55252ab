"""Pasting per-box mask probabilities into the full image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _interpolation_matrix(extent: Tensor, in_size: int, offsets: Tensor, length: int) -> Tensor:
    """Rows of bilinear weights (align_corners=False, as F.interpolate) that
    resample a line of ``in_size`` values to ``extent[i]`` values placed at
    ``offsets[i]`` on an image line of ``length`` pixels: [n, length, in_size].
    Pixels outside [offsets, offsets + extent) get zero rows."""
    dtype = torch.float32
    out_size = extent.clamp(min=1)
    pixel = torch.arange(length, device=extent.device)
    dst = pixel[None, :] - offsets[:, None]  # position inside the resized mask
    inside = (dst >= 0) & (dst < extent[:, None])
    scale = in_size / out_size.to(dtype)
    src = ((dst.to(dtype) + 0.5) * scale[:, None] - 0.5).clamp(min=0)
    low = src.floor().long().clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    frac = src - low.to(dtype)
    weights = torch.zeros(extent.shape[0], length, in_size, dtype=dtype, device=extent.device)
    weights.scatter_add_(2, low[..., None], ((1 - frac) * inside)[..., None])
    weights.scatter_add_(2, high[..., None], (frac * inside)[..., None])
    return weights


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int],
                padding: int = 1) -> Tensor:
    """masks [n, 1, M, M] of probabilities for boxes [n, 4] → [n, 1, H, W].

    Each mask is padded by ``padding`` cells of zeros and its box grown by the
    same factor (so the mask's border fades out instead of being cut), the box
    is truncated to whole pixels, and the mask is resized bilinearly onto it.
    Separable, so all masks are pasted in two batched matrix products, in
    float32 even under autocast (which would run them in float16/bfloat16).
    """
    device = boxes.device.type
    if torch.is_autocast_enabled(device):  # (a context only when needed: torch.export)
        with torch.autocast(device, enabled=False):
            return _paste(masks, boxes, image_size, padding)
    return _paste(masks, boxes, image_size, padding)


def _paste(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], padding: int) -> Tensor:
    height, width = image_size
    size = masks.shape[-1]
    padded = F.pad(masks[:, 0], (padding,) * 4)
    scale = (size + 2 * padding) / size
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    ctr_x = (boxes[:, 2] + boxes[:, 0]) * 0.5
    ctr_y = (boxes[:, 3] + boxes[:, 1]) * 0.5
    grown = torch.stack([ctr_x - half_w, ctr_y - half_h, ctr_x + half_w, ctr_y + half_h], 1)
    grown = grown.to(torch.int64)  # truncation, as the boxes' pixel grid
    box_w = grown[:, 2] - grown[:, 0] + 1
    box_h = grown[:, 3] - grown[:, 1] + 1
    rows = _interpolation_matrix(box_h, padded.shape[-2], grown[:, 1], height)
    cols = _interpolation_matrix(box_w, padded.shape[-1], grown[:, 0], width)
    pasted = rows @ padded.to(torch.float32) @ cols.transpose(1, 2)
    return pasted[:, None].to(masks.dtype)
