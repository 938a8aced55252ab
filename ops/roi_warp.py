"""ROI Warp (MNC; Mask R-CNN Table 2c): box corners rounded to feature cells
as ROI Pooling rounds them, then bilinear sampling over continuous bins as
ROI Align samples. Bilinear, but still quantized once."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from . import _args
from ._library import kernels


def roi_warp(
    input: Tensor,
    boxes: Tensor | Sequence[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    mode: str = "max",
) -> Tensor:
    """Pools a fixed-size feature for every box after rounding its corners.

    Equal to ``roi_align(input, rounded, output_size, 1.0, sampling_ratio,
    aligned=False, mode=mode)`` where ``rounded`` holds the corners
    ``round(x * spatial_scale)`` (halves away from zero, as roi_pool rounds).
    Arguments are those of :func:`ops.roi_align`; mode defaults to "max", the
    aggregation of the original RoIWarp.
    """
    op = "roi_warp"
    _args.check_input(op, input)
    rois = _args.as_rois(op, boxes, input)
    height, width = _args.output_pair(op, output_size)
    return kernels().roi_warp(
        input, rois, _args.check_scale(op, spatial_scale), height, width,
        _args.check_sampling_ratio(op, sampling_ratio), _args.is_max_mode(op, mode))


class RoIWarp(nn.Module):
    """nn.Module form of :func:`roi_warp`."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
                 sampling_ratio: int = -1, mode: str = "max"):
        super().__init__()
        self.output_size = _args.output_pair("RoIWarp", output_size)
        self.spatial_scale = _args.check_scale("RoIWarp", spatial_scale)
        self.sampling_ratio = _args.check_sampling_ratio("RoIWarp", sampling_ratio)
        _args.is_max_mode("RoIWarp", mode)
        self.mode = mode

    def forward(self, input: Tensor, boxes: Tensor | Sequence[Tensor]) -> Tensor:
        return roi_warp(input, boxes, self.output_size, self.spatial_scale,
                        self.sampling_ratio, self.mode)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, mode={self.mode!r}")
