"""What the model does to images at its edge: validation, optional resize,
normalization, batching with padding; and mapping results back."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .roi_heads.paste import paste_masks


class ImageTransform(nn.Module):
    """Images in [0, 1] → a normalized, padded batch; and detections back.

    The model owns its input geometry (docs/geometry.md): whatever size an
    image comes in, it is resized here, and the detections are mapped back to
    the image as given (``to_original``), so results are always in the frame
    of the caller's image.

    Args:
        min_size: the shorter side after resizing; a list of sizes in training
            picks one at random per image (scale jitter; the targets follow),
            and evaluation uses the last. None: no resize (images are used at
            the size they come in).
        max_size: the longer side is at most this (None: no cap).
        mean, std: per-channel normalization (ImageNet's by default).
            Images of another float dtype (float64, float16) are converted to
            these buffers' dtype, the model's, first.
        size_divisible: the batch is padded to a multiple of this.
    """

    def __init__(self, min_size: int | Sequence[int] | None = 800, max_size: int | None = 1333,
                 mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225), size_divisible: int = 32):
        super().__init__()
        sizes = None if min_size is None else (
            (min_size,) if isinstance(min_size, (int, float)) else tuple(min_size))
        if sizes is not None and (not sizes or not all(
                float(s) == int(s) and int(s) >= 1 for s in sizes)):
            raise ValueError(f"ImageTransform: min_size must be a positive integer, a list of "
                             f"them, or None; got {min_size!r}")
        if max_size is not None and (float(max_size) != int(max_size) or int(max_size) < 1):
            raise ValueError(f"ImageTransform: max_size must be a positive integer or None, "
                             f"got {max_size!r}")
        self.min_sizes = None if sizes is None else tuple(int(s) for s in sizes)
        self.max_size = None if max_size is None else int(max_size)
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1), persistent=False)
        self.size_divisible = size_divisible

    @property
    def min_size(self) -> int | None:
        """The shorter side in evaluation (the last of the training sizes)."""
        return None if self.min_sizes is None else self.min_sizes[-1]

    def with_sizes(self, min_size: int | Sequence[int] | None,
                   max_size: int | None) -> ImageTransform:
        """A copy resizing to other sizes (same normalization and padding)."""
        return ImageTransform(min_size, max_size, self.mean.flatten().tolist(),
                              self.std.flatten().tolist(), self.size_divisible)

    def extra_repr(self) -> str:
        sizes = self.min_sizes if self.min_sizes and len(self.min_sizes) > 1 else self.min_size
        return (f"min_size={sizes}, max_size={self.max_size}, "
                f"size_divisible={self.size_divisible}")

    def scale_for(self, size: tuple[int, int], min_size: int | None = None) -> float:
        """The resize factor of an image of ``size`` (h, w) to ``min_size``
        (default: the evaluation size)."""
        min_size = self.min_size if min_size is None else min_size
        if min_size is None:
            return 1.0
        # sym_min/sym_max: the same as min/max on numbers, and no branch on the
        # image's shape under torch.export (a symbolic size)
        scale = min_size / torch.sym_min(*size)
        if self.max_size is not None:
            scale = torch.sym_min(scale, self.max_size / torch.sym_max(*size))
        return scale

    def _min_size(self) -> int | None:
        if self.min_sizes is None or not self.training or len(self.min_sizes) == 1:
            return self.min_size
        return self.min_sizes[int(torch.randint(len(self.min_sizes), ()).item())]

    def resize(self, image: Tensor, target: dict[str, Tensor] | None):
        original = tuple(image.shape[-2:])
        scale = self.scale_for(original, self._min_size())
        if not torch.compiler.is_exporting() and scale == 1.0:
            return image, target  # (exported: resampling at factor 1 is the identity)
        # the output size as F.interpolate(scale_factor=scale) rounds it (down), given
        # as a size so that an exported resize samples exactly as this one does
        size = (torch.sym_int(original[0] * scale), torch.sym_int(original[1] * scale))
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
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
            image = image.to(self.mean.dtype)
            image, target = self.resize(image, targets[i] if targets is not None else None)
            resized.append((image - self.mean) / self.std)
            sizes.append(tuple(image.shape[-2:]))
            out_targets.append(target)
        height = max(s[0] for s in sizes)
        width = max(s[1] for s in sizes)
        d = self.size_divisible
        # rounded up, in integers; no floor division of a negative number, which the
        # ONNX exporter turns into a truncating one
        height, width = (height + d - 1) // d * d, (width + d - 1) // d * d
        # zeros to the right and below (F.pad, not a copy into a slice: no branch on
        # whether an image already fills the batch, for torch.export)
        batch = torch.stack([F.pad(image, (0, width - image.shape[-1], 0, height - image.shape[-2]))
                             for image in resized])
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
