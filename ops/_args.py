"""Validation and conversion of the arguments of the public ROI operators.

Structural problems (ranks, shapes, dtypes, devices, sizes, modes) are caught
here with messages that name the Python argument. Problems in box values
(non-finite coordinates, bad batch indices) are caught by the kernels, which
see the data; they raise ValueError too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

MODES = ("avg", "max")


def check_input(op: str, input: Tensor) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a torch.Tensor, got {type(input).__name__}")
    if input.dim() != 4:
        raise ValueError(f"{op}: input must be 4-D [N, C, H, W], got shape {tuple(input.shape)}")
    if not input.is_floating_point():
        raise TypeError(f"{op}: input must be a floating point tensor, got {input.dtype}")


def coordinate_dtype(input: Tensor) -> torch.dtype:
    """Boxes are converted to float64 for float64 input and to float32 otherwise
    (float16/bfloat16 inputs keep full-precision box coordinates)."""
    return torch.float64 if input.dtype == torch.float64 else torch.float32


def _check_box_tensor(op: str, name: str, boxes: Tensor, columns: int, input: Tensor) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != columns:
        layout = "(batch_index, x1, y1, x2, y2)" if columns == 5 else "(x1, y1, x2, y2)"
        raise ValueError(
            f"{op}: {name} must be a [K, {columns}] tensor of {layout}, "
            f"got shape {tuple(boxes.shape)}")
    if boxes.is_complex() or boxes.dtype == torch.bool:
        raise TypeError(f"{op}: {name} must be a real-valued tensor, got {boxes.dtype}")
    if boxes.device != input.device:
        raise ValueError(
            f"{op}: {name} is on {boxes.device} but input is on {input.device}; "
            "move both to the same device")


def as_rois(op: str, boxes: Tensor | Sequence[Tensor], input: Tensor) -> Tensor:
    """boxes as a Tensor[K, 5] of (batch_index, x1, y1, x2, y2) in the
    coordinate dtype, from either torchvision form."""
    dtype = coordinate_dtype(input)
    if isinstance(boxes, Tensor):
        _check_box_tensor(op, "boxes", boxes, 5, input)
        return boxes.to(dtype)
    if not isinstance(boxes, (list, tuple)):
        raise TypeError(
            f"{op}: boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], "
            f"got {type(boxes).__name__}")
    if len(boxes) > input.shape[0]:
        raise ValueError(
            f"{op}: boxes is a list of {len(boxes)} tensors but input holds "
            f"{input.shape[0]} images")
    parts = []
    for i, b in enumerate(boxes):
        if not isinstance(b, Tensor):
            raise TypeError(f"{op}: boxes[{i}] must be a Tensor[L, 4], got {type(b).__name__}")
        _check_box_tensor(op, f"boxes[{i}]", b, 4, input)
        index = torch.full((b.shape[0], 1), i, dtype=dtype, device=b.device)
        parts.append(torch.cat([index, b.to(dtype)], dim=1))
    if not parts:
        return torch.zeros((0, 5), dtype=dtype, device=input.device)
    return torch.cat(parts, dim=0)


def output_pair(op: str, output_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(output_size, int) and not isinstance(output_size, bool):
        size = (output_size, output_size)
    elif (isinstance(output_size, (list, tuple)) and len(output_size) == 2
          and all(isinstance(s, int) and not isinstance(s, bool) for s in output_size)):
        size = (output_size[0], output_size[1])
    else:
        raise TypeError(f"{op}: output_size must be an int or a pair of ints (height, width), "
                        f"got {output_size!r}")
    if min(size) < 1:
        raise ValueError(f"{op}: output_size must be at least 1, got {output_size!r}")
    return size


def check_scale(op: str, spatial_scale: float) -> float:
    scale = float(spatial_scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{op}: spatial_scale must be a positive finite number, got {spatial_scale!r}")
    return scale


def check_sampling_ratio(op: str, sampling_ratio: int) -> int:
    if not isinstance(sampling_ratio, int) or isinstance(sampling_ratio, bool):
        raise TypeError(f"{op}: sampling_ratio must be an int (<= 0 means adaptive), "
                        f"got {sampling_ratio!r}")
    return sampling_ratio


def is_max_mode(op: str, mode: str) -> bool:
    if mode not in MODES:
        raise ValueError(f"{op}: mode must be one of {MODES}, got {mode!r}")
    return mode == "max"
