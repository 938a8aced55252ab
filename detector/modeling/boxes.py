"""Box conventions and the box coder.

Boxes are (x1, y1, x2, y2) in absolute pixels; sizes are (height, width).
Box geometry (anchors, decoding, IoUs, regression targets, FPN levels) is
computed in float32 (float64 for a float64 model) even where the features are
float16/bfloat16, as under autocast: bfloat16 spaces the coordinates near
1,000 px 4 px apart and float16 overflows at areas above 65,504 px^2.
"""

from __future__ import annotations

import math

import torch
import torchvision
from torch import Tensor

import ops


def geometry_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype box geometry is computed in for features or predictions of
    ``dtype``: float64 stays float64, everything else becomes float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class BoxCoder:
    """Encodes boxes as (dx, dy, dw, dh) deltas relative to reference boxes and back.

    dx = wx * (gx - px) / pw, dw = ww * log(gw / pw), with centres and sizes of
    the ground truth g and the reference p. Predicted log-size deltas are
    clamped at ``clip`` so that exp() stays finite.
    """

    def __init__(self, weights: tuple[float, float, float, float],
                 clip: float = math.log(1000.0 / 16)):
        self.weights = weights
        self.clip = clip

    def encode(self, targets: Tensor, references: Tensor) -> Tensor:
        """targets [K, 4] relative to references [K, 4] → deltas [K, 4] (float32, or float64)."""
        dtype = geometry_dtype(torch.promote_types(targets.dtype, references.dtype))
        targets, references = targets.to(dtype), references.to(dtype)
        wx, wy, ww, wh = self.weights
        ref_w = references[:, 2] - references[:, 0]
        ref_h = references[:, 3] - references[:, 1]
        ref_x = references[:, 0] + 0.5 * ref_w
        ref_y = references[:, 1] + 0.5 * ref_h
        gt_w = targets[:, 2] - targets[:, 0]
        gt_h = targets[:, 3] - targets[:, 1]
        gt_x = targets[:, 0] + 0.5 * gt_w
        gt_y = targets[:, 1] + 0.5 * gt_h
        return torch.stack([wx * (gt_x - ref_x) / ref_w, wy * (gt_y - ref_y) / ref_h,
                            ww * torch.log(gt_w / ref_w), wh * torch.log(gt_h / ref_h)], dim=1)

    def decode(self, deltas: Tensor, references: Tensor) -> Tensor:
        """deltas [K, 4 * C] against references [K, 4] → boxes [K, C, 4], in
        float32 (float64 if either input is) whatever the deltas' dtype."""
        dtype = geometry_dtype(torch.promote_types(deltas.dtype, references.dtype))
        deltas, references = deltas.to(dtype), references.to(dtype)
        wx, wy, ww, wh = self.weights
        widths = references[:, 2] - references[:, 0]
        heights = references[:, 3] - references[:, 1]
        ctr_x = references[:, 0] + 0.5 * widths
        ctr_y = references[:, 1] + 0.5 * heights
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.clip)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.clip)
        pred_x = dx * widths[:, None] + ctr_x[:, None]
        pred_y = dy * heights[:, None] + ctr_y[:, None]
        half_w = torch.tensor(0.5, dtype=deltas.dtype, device=deltas.device) * (
            torch.exp(dw) * widths[:, None])
        half_h = torch.tensor(0.5, dtype=deltas.dtype, device=deltas.device) * (
            torch.exp(dh) * heights[:, None])
        return torch.stack([pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h],
                           dim=2)


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float,
                max_coordinate: float | int | Tensor) -> Tensor:
    """NMS within each group (class, pyramid level) separately: the indices
    kept, by decreasing score. ``max_coordinate`` bounds the boxes'
    coordinates (e.g. the longer side of the image they are clipped to).

    Eager this is torchvision's batched_nms. Under torch.export it is the
    coordinate-offset form (each group's boxes moved apart by more than
    ``max_coordinate``, then one ops.nms), which has no data-dependent branch
    and no operator outside this project's; the two agree up to the float
    rounding of the offset coordinates.
    """
    if not torch.compiler.is_exporting():
        return torchvision.ops.batched_nms(boxes, scores, groups, iou_threshold)
    offsets = groups.to(boxes.dtype)[:, None] * (max_coordinate + 1)
    return ops.nms(boxes + offsets, scores, iou_threshold)
