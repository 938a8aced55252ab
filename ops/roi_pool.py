"""ROI Pooling (Fast/Faster R-CNN): box corners rounded to feature cells,
bins with floor/ceil edges, max over the integer cells of each bin."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from . import _args
from ._library import kernels


def roi_pool(
    input: Tensor,
    boxes: Tensor | Sequence[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """Max-pools a fixed-size feature for every box, quantizing twice.

    Arguments as in :func:`ops.roi_align`. Equal to torchvision.ops.roi_pool,
    forward and backward. A bin wholly outside the map gives 0.
    """
    op = "roi_pool"
    _args.check_input(op, input)
    rois = _args.as_rois(op, boxes, input)
    height, width = _args.output_pair(op, output_size)
    output, _ = kernels().roi_pool(
        input, rois, _args.check_scale(op, spatial_scale), height, width)
    return output


class RoIPool(nn.Module):
    """nn.Module form of :func:`roi_pool`."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float = 1.0):
        super().__init__()
        self.output_size = _args.output_pair("RoIPool", output_size)
        self.spatial_scale = _args.check_scale("RoIPool", spatial_scale)

    def forward(self, input: Tensor, boxes: Tensor | Sequence[Tensor]) -> Tensor:
        return roi_pool(input, boxes, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"
