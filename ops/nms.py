"""Non-maximum suppression, the operator ``torch.ops.roi_ops.nms`` (C++,
ops/csrc/nms.cpp): greedy, by decreasing score; a box is dropped when its IoU
with a kept, higher-scoring box is above ``iou_threshold`` (torchvision's
rule). It is what exported detectors call, so that a saved program needs this
package only; its fake kernel tells torch.export that the number kept is
data-dependent, and ops.onnx translates it to ONNX NonMaxSuppression."""

from __future__ import annotations

from torch import Tensor

from ._library import kernels


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices (int64) of the boxes [K, 4] (x1, y1, x2, y2) kept, by decreasing score."""
    return kernels().nms(boxes, scores, float(iou_threshold))
