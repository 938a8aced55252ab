"""Pooling a fixed-size feature for every box, from one feature map or a
pyramid, with the ROI operator given from outside (roi_pool, roi_warp,
roi_align, ... with their parameters bound)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .boxes import geometry_dtype

# op(input, rois, spatial_scale=...) -> [K, C, h, w]; e.g.
# functools.partial(ops.roi_align, output_size=7, sampling_ratio=2).
RoIOp = Callable[..., Tensor]


def boxes_to_rois(boxes: list[Tensor]) -> Tensor:
    """Per-image boxes [L_i, 4] → rows (image_index, x1, y1, x2, y2) [K, 5], in
    float32 (float64 for float64 boxes)."""
    dtype = geometry_dtype(boxes[0].dtype)
    index = [torch.full((b.shape[0], 1), i, dtype=dtype, device=b.device)
             for i, b in enumerate(boxes)]
    return torch.cat([torch.cat(index), torch.cat(boxes).to(dtype)], dim=1)


def pyramid_levels(boxes: Tensor, min_level: int, max_level: int, canonical_scale: float = 224,
                   canonical_level: int = 4, eps: float = 1e-6) -> Tensor:
    """FPN level of each box, floor(4 + log2(sqrt(area) / 224)) clamped to the
    available levels, returned as an index from min_level. Computed in float32
    (float64 for float64 boxes): in float16 the area of a 256 x 256 box overflows."""
    boxes = boxes.to(geometry_dtype(boxes.dtype))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    level = torch.floor(canonical_level + torch.log2(torch.sqrt(area) / canonical_scale + eps))
    return (level.clamp(min_level, max_level) - min_level).to(torch.int64)


class Pooler(nn.Module):
    """Pools every box with ``op`` from the feature map of its level.

    Args:
        op: the ROI operator with its parameters bound (output size, sampling
            ratio, ...); called as op(feature, rois, spatial_scale=1 / stride).
        strides: the stride of each feature map passed to forward, finest
            first; with more than one, boxes are assigned to levels as in FPN.
    """

    def __init__(self, op: RoIOp, strides: Sequence[int], canonical_scale: float = 224,
                 canonical_level: int = 4):
        super().__init__()
        self.op = op
        self.strides = list(strides)
        levels = [math.log2(s) for s in self.strides]
        if any(level != int(level) for level in levels):
            raise ValueError(f"Pooler: strides must be powers of two, got {self.strides}")
        self.min_level, self.max_level = int(levels[0]), int(levels[-1])
        if [int(level) for level in levels] != list(range(self.min_level, self.max_level + 1)):
            raise ValueError(f"Pooler: strides must be consecutive powers of two, finest first, "
                             f"got {self.strides}")
        self.canonical_scale, self.canonical_level = canonical_scale, canonical_level

    def extra_repr(self) -> str:
        return f"op={self.op!r}, strides={self.strides}"

    def forward(self, features: list[Tensor], boxes: list[Tensor]) -> Tensor:
        if len(features) != len(self.strides):
            raise ValueError(f"Pooler: got {len(features)} feature maps for strides {self.strides}")
        rois = boxes_to_rois(boxes)
        if len(features) == 1:
            return self.op(features[0], rois, spatial_scale=1.0 / self.strides[0])
        levels = pyramid_levels(rois[:, 1:], self.min_level, self.max_level,
                                self.canonical_scale, self.canonical_level)
        first = features[0]
        out = first.new_zeros((rois.shape[0], first.shape[1]) + self._output_size(first, rois))
        for level, (feature, stride) in enumerate(zip(features, self.strides)):
            index = torch.nonzero(levels == level).flatten()
            out[index] = self.op(feature, rois[index], spatial_scale=1.0 / stride).to(out.dtype)
        return out

    def _output_size(self, feature: Tensor, rois: Tensor) -> tuple[int, int]:
        return tuple(self.op(feature, rois[:0], spatial_scale=1.0 / self.strides[0]).shape[-2:])
