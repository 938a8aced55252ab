"""Pure-PyTorch definitions of roi_pool, roi_warp and roi_align.

This is the readable version of what the kernels compute, written for people
learning the operators and used as a second oracle in the tests (the first is
torchvision). It loops over boxes and is slow; gradients come from autograd.

Conventions (those of the kernels and of torchvision):
- boxes are (batch_index, x1, y1, x2, y2) rows in image pixels; a box is put
  on the feature map by multiplying its corners by ``spatial_scale``;
- feature cell (i, j) has its centre at (i, j) in feature coordinates (with
  ``aligned=True`` roi_align shifts boxes by half a cell instead);
- a bilinear sample point more than one cell outside the map reads 0; one
  within a cell of the border is clamped onto it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def round_half_away(v: Tensor) -> Tensor:
    """Rounds halves away from zero, as C's round() (torch.round rounds halves to even)."""
    whole = torch.trunc(v)
    return whole + torch.where((v - whole).abs() >= 0.5, torch.sign(v), torch.zeros_like(v))


def _axis_weights(coords: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For sample coordinates along one axis: the two cells each reads and
    their weights (both zero for a sample more than a cell outside)."""
    valid = (coords >= -1) & (coords <= size)
    v = coords.clamp(min=0)
    low = v.floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    v = torch.where(at_edge, low.to(v.dtype), v)
    w_high = v - low.to(v.dtype)
    w_low = 1 - w_high
    zero = torch.zeros_like(v)
    return low, high, torch.where(valid, w_low, zero), torch.where(valid, w_high, zero)


def bilinear_grid(plane: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
    """Bilinear values of plane [C, H, W] at every (y, x) of ys [S] x xs [T]: [C, S, T]."""
    _, height, width = plane.shape
    y_low, y_high, wy_low, wy_high = _axis_weights(ys, height)
    x_low, x_high, wx_low, wx_high = _axis_weights(xs, width)

    def read(rows: Tensor, cols: Tensor) -> Tensor:
        return plane[:, rows][:, :, cols]

    def weight(wy: Tensor, wx: Tensor) -> Tensor:
        return wy[:, None] * wx[None, :]

    return (weight(wy_low, wx_low) * read(y_low, x_low)
            + weight(wy_low, wx_high) * read(y_low, x_high)
            + weight(wy_high, wx_low) * read(y_high, x_low)
            + weight(wy_high, wx_high) * read(y_high, x_high))


def _sample_coords(start: Tensor, bin_size: Tensor, pooled: int, grid: int) -> Tensor:
    """Coordinates of `grid` evenly spaced samples in each of `pooled` bins, bin-major."""
    p = torch.arange(pooled, dtype=start.dtype, device=start.device).repeat_interleave(grid)
    i = torch.arange(grid, dtype=start.dtype, device=start.device).repeat(pooled)
    return start + p * bin_size + (i + 0.5) * bin_size / grid


def _bilinear_pool(input: Tensor, rois: Tensor, output_size: tuple[int, int],
                   spatial_scale: float, sampling_ratio: int, aligned: bool,
                   quantize: bool, mode: str) -> Tensor:
    pooled_h, pooled_w = output_size
    num_rois, channels = rois.shape[0], input.shape[1]
    out = input.new_zeros((num_rois, channels, pooled_h, pooled_w))
    scale = torch.tensor(spatial_scale, dtype=input.dtype)
    for k in range(num_rois):
        n = int(rois[k, 0])
        x1, y1, x2, y2 = (rois[k, 1:] * scale).unbind()
        if quantize:  # roi_warp: corners snapped to cells, as roi_pool does
            x1, y1, x2, y2 = round_half_away(torch.stack([x1, y1, x2, y2])).unbind()
        offset = 0.5 if aligned else 0.0
        start_w, start_h = x1 - offset, y1 - offset
        roi_w, roi_h = (x2 - offset) - start_w, (y2 - offset) - start_h
        if not aligned:  # legacy: every box at least one cell
            roi_w, roi_h = roi_w.clamp(min=1), roi_h.clamp(min=1)
        bin_h, bin_w = roi_h / pooled_h, roi_w / pooled_w
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h.item() / pooled_h)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w.item() / pooled_w)
        if grid_h <= 0 or grid_w <= 0:
            continue  # empty box: no samples, output 0
        ys = _sample_coords(start_h, bin_h, pooled_h, grid_h)
        xs = _sample_coords(start_w, bin_w, pooled_w, grid_w)
        values = bilinear_grid(input[n], ys, xs)
        values = values.view(channels, pooled_h, grid_h, pooled_w, grid_w)
        values = values.permute(0, 1, 3, 2, 4).reshape(channels, pooled_h, pooled_w, -1)
        if mode == "avg":
            out[k] = values.sum(-1) / (grid_h * grid_w)
        else:
            out[k] = values.max(-1).values
    return out


def roi_align(input: Tensor, rois: Tensor, output_size: tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False, mode: str = "avg") -> Tensor:
    """Each bin: average (or max) of grid_h x grid_w bilinear samples; no rounding."""
    return _bilinear_pool(input, rois, output_size, spatial_scale, sampling_ratio,
                          aligned, quantize=False, mode=mode)


def roi_warp(input: Tensor, rois: Tensor, output_size: tuple[int, int],
             spatial_scale: float = 1.0, sampling_ratio: int = -1,
             mode: str = "max") -> Tensor:
    """roi_align(aligned=False) of the box whose scaled corners are rounded to cells."""
    return _bilinear_pool(input, rois, output_size, spatial_scale, sampling_ratio,
                          aligned=False, quantize=True, mode=mode)


def roi_pool(input: Tensor, rois: Tensor, output_size: tuple[int, int],
             spatial_scale: float = 1.0) -> Tensor:
    """Corners rounded to cells; bin p spans cells [floor(p * bin), ceil((p + 1) * bin));
    each bin is the max of its cells (0 when it lies wholly outside the map)."""
    pooled_h, pooled_w = output_size
    num_rois, channels = rois.shape[0], input.shape[1]
    height, width = input.shape[-2:]
    out = input.new_zeros((num_rois, channels, pooled_h, pooled_w))
    scale = torch.tensor(spatial_scale, dtype=input.dtype)
    for k in range(num_rois):
        n = int(rois[k, 0])
        x1, y1, x2, y2 = (int(v) for v in round_half_away(rois[k, 1:] * scale))
        bin_h = torch.tensor(max(y2 - y1 + 1, 1), dtype=input.dtype) / pooled_h
        bin_w = torch.tensor(max(x2 - x1 + 1, 1), dtype=input.dtype) / pooled_w
        for ph in range(pooled_h):
            h0 = min(max(int(torch.floor(ph * bin_h)) + y1, 0), height)
            h1 = min(max(int(torch.ceil((ph + 1) * bin_h)) + y1, 0), height)
            for pw in range(pooled_w):
                w0 = min(max(int(torch.floor(pw * bin_w)) + x1, 0), width)
                w1 = min(max(int(torch.ceil((pw + 1) * bin_w)) + x1, 0), width)
                if h1 > h0 and w1 > w0:
                    region = input[n, :, h0:h1, w0:w1].reshape(channels, -1)
                    out[k, :, ph, pw] = region.max(1).values
    return out
