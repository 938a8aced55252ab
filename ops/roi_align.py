"""ROI Align (Mask R-CNN): no quantization; each bin is the average (or max)
of bilinearly interpolated sample points."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from . import _args
from ._library import kernels


def roi_align(
    input: Tensor,
    boxes: Tensor | Sequence[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    mode: str = "avg",
) -> Tensor:
    """Pools a fixed-size feature for every box, with no rounding anywhere.

    Args:
        input: feature map [N, C, H, W] (float32/float64; float16/bfloat16 too).
        boxes: Tensor[K, 5] of (batch_index, x1, y1, x2, y2), or a list of N'
            Tensor[L_i, 4] (x1, y1, x2, y2) for images 0..N'-1, in image
            pixels. Converted to float64 for float64 input, float32 otherwise.
        output_size: (height, width) of the output, or one int for both.
        spatial_scale: feature cells per image pixel (1 / stride).
        sampling_ratio: sample points per bin along each axis; <= 0 means
            adaptive, ceil(box size / output size) in cells.
        aligned: shift the box by half a cell so that sample points line up
            with pixel centres (Detectron2's ROIAlignV2).
        mode: "avg" (the paper's default) or "max" over each bin's samples.

    Returns:
        Tensor[K, C, output_height, output_width]. Equal to
        torchvision.ops.roi_align for mode="avg".
    """
    op = "roi_align"
    _args.check_input(op, input)
    rois = _args.as_rois(op, boxes, input)
    height, width = _args.output_pair(op, output_size)
    return kernels().roi_align(
        input, rois, _args.check_scale(op, spatial_scale), height, width,
        _args.check_sampling_ratio(op, sampling_ratio), bool(aligned),
        _args.is_max_mode(op, mode))


class RoIAlign(nn.Module):
    """nn.Module form of :func:`roi_align`."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
                 sampling_ratio: int = -1, aligned: bool = False, mode: str = "avg"):
        super().__init__()
        self.output_size = _args.output_pair("RoIAlign", output_size)
        self.spatial_scale = _args.check_scale("RoIAlign", spatial_scale)
        self.sampling_ratio = _args.check_sampling_ratio("RoIAlign", sampling_ratio)
        _args.is_max_mode("RoIAlign", mode)
        self.aligned = bool(aligned)
        self.mode = mode

    def forward(self, input: Tensor, boxes: Tensor | Sequence[Tensor]) -> Tensor:
        return roi_align(input, boxes, self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.aligned, self.mode)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}, "
                f"mode={self.mode!r}")
