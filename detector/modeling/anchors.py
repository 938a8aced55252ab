"""Anchor boxes on every feature level."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class AnchorGenerator(nn.Module):
    """For each level, anchors of ``sizes[level]`` x ``aspect_ratios[level]``
    (height / width) centred on every feature cell, ordered by cell (row-major)
    then by anchor. Base anchors are rounded to whole pixels."""

    def __init__(self, sizes: Sequence[Sequence[int]], aspect_ratios: Sequence[Sequence[float]]):
        super().__init__()
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"AnchorGenerator: {len(sizes)} levels of sizes but "
                             f"{len(aspect_ratios)} of aspect_ratios")
        self.sizes = [tuple(s) for s in sizes]
        self.aspect_ratios = [tuple(a) for a in aspect_ratios]

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    @staticmethod
    def base_anchors(sizes, aspect_ratios, dtype, device) -> Tensor:
        scales = torch.as_tensor(sizes, dtype=dtype, device=device)
        ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
        hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
        return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()

    def forward(self, image_size: tuple[int, int], feature_sizes: Sequence[tuple[int, int]],
                dtype: torch.dtype, device: torch.device) -> Tensor:
        """Anchors [sum over levels of H * W * A, 4] for a padded batch of image_size."""
        if len(feature_sizes) != len(self.sizes):
            raise ValueError(f"AnchorGenerator: {len(feature_sizes)} feature levels but "
                             f"anchors are configured for {len(self.sizes)}")
        levels = []
        for (h, w), sizes, ratios in zip(feature_sizes, self.sizes, self.aspect_ratios):
            stride_y, stride_x = image_size[0] // h, image_size[1] // w
            # cells row by row; from one arange rather than a reshaped meshgrid, so
            # that torch.export needs no assumption on whether h or w is 1
            cell = torch.arange(h * w, dtype=torch.int32, device=device)
            shift_y, shift_x = (cell // w) * stride_y, (cell % w) * stride_x
            shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=1)
            base = self.base_anchors(sizes, ratios, dtype, device)
            levels.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
        return torch.cat(levels)
