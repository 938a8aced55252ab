"""What the model does to images at its edge: validation, optional resize,
normalization, batching with padding; and mapping results back."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .roi_heads.paste import paste_masks


class ImageTransform(nn.Module):
    """Images in [0, 1] → a normalized, padded batch.

    Args:
        min_size, max_size: resize so the shorter side is ``min_size`` unless the
            longer would exceed ``max_size`` (None: no resize, for data
            pipelines that resize already).
        mean, std: per-channel normalization (ImageNet's by default).
        size_divisible: the batch is padded to a multiple of this.
    """

    def __init__(self, min_size: int | None = 800, max_size: int | None = 1333,
                 mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225), size_divisible: int = 32):
        super().__init__()
        self.min_size, self.max_size = min_size, max_size
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1), persistent=False)
        self.size_divisible = size_divisible

    def extra_repr(self) -> str:
        return (f"min_size={self.min_size}, max_size={self.max_size}, "
                f"size_divisible={self.size_divisible}")

    def scale_for(self, size: tuple[int, int]) -> float:
        if self.min_size is None:
            return 1.0
        scale = self.min_size / min(size)
        if self.max_size is not None:
            scale = min(scale, self.max_size / max(size))
        return scale

    def resize(self, image: Tensor, target: dict[str, Tensor] | None):
        original = tuple(image.shape[-2:])
        scale = self.scale_for(original)
        if scale == 1.0:
            return image, target
        image = F.interpolate(image[None], scale_factor=scale, mode="bilinear",
                              recompute_scale_factor=True, align_corners=False)[0]
        if target is not None:
            target = dict(target)
            ratio_h, ratio_w = (torch.tensor(new, dtype=torch.float32)
                                / torch.tensor(old, dtype=torch.float32)
                                for new, old in zip(image.shape[-2:], original))
            ratios = torch.stack([ratio_w, ratio_h, ratio_w, ratio_h]).to(target["boxes"])
            target["boxes"] = target["boxes"] * ratios
            if "masks" in target:
                masks = target["masks"][:, None].float()
                target["masks"] = F.interpolate(masks, size=image.shape[-2:])[:, 0].byte()
        return image, target

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        """Returns the batch [B, 3, H, W], each image's (h, w) after resizing,
        and the targets in resized coordinates."""
        resized, sizes, out_targets = [], [], []
        for i, image in enumerate(images):
            image, target = self.resize(image, targets[i] if targets is not None else None)
            resized.append((image - self.mean.to(image)) / self.std.to(image))
            sizes.append(tuple(image.shape[-2:]))
            out_targets.append(target)
        height = max(s[0] for s in sizes)
        width = max(s[1] for s in sizes)
        d = self.size_divisible
        height, width = int(math.ceil(height / d) * d), int(math.ceil(width / d) * d)
        batch = resized[0].new_zeros((len(resized), resized[0].shape[0], height, width))
        for b, image in zip(batch, resized):
            b[:, : image.shape[1], : image.shape[2]].copy_(image)
        return batch, sizes, (out_targets if targets is not None else None)

    @staticmethod
    def to_original(detections: list[dict[str, Tensor]], sizes: list[tuple[int, int]],
                    original_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Boxes scaled back to each original image, masks pasted into it."""
        for det, size, original in zip(detections, sizes, original_sizes):
            ratio_h, ratio_w = (torch.tensor(o, dtype=torch.float32, device=det["boxes"].device)
                                / torch.tensor(s, dtype=torch.float32, device=det["boxes"].device)
                                for o, s in zip(original, size))
            x1, y1, x2, y2 = det["boxes"].unbind(1)
            det["boxes"] = torch.stack([x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h], 1)
            if "masks" in det:
                det["masks"] = paste_masks(det["masks"], det["boxes"], original)
        return detections
