"""Detections drawn on their image: masks, boxes, class names and scores."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks


def draw(image: torch.Tensor, detections: dict, class_names: Sequence[str] | None,
         score_threshold: float = 0.5, mask_threshold: float = 0.5,
         show_scores: bool = True) -> torch.Tensor:
    """uint8 [3, H, W] with the detections scoring at least ``score_threshold``
    (``detections`` without scores, e.g. ground truth, are all drawn)."""
    if "scores" in detections:
        keep = detections["scores"] >= score_threshold
    else:
        keep = torch.ones(len(detections["boxes"]), dtype=torch.bool)
    boxes, labels = (detections[k][keep].cpu() for k in ("boxes", "labels"))
    scores = detections["scores"][keep].cpu().tolist() if "scores" in detections else None
    if "masks" in detections and keep.any():
        masks = detections["masks"][keep].cpu()
        masks = (masks[:, 0] if masks.dim() == 4 else masks).float() >= mask_threshold
        image = draw_segmentation_masks(image, masks, alpha=0.45)
    names = [class_names[int(label)] if class_names else str(int(label)) for label in labels]
    if scores is not None and show_scores:
        names = [f"{name} {score:.2f}" for name, score in zip(names, scores)]
    if len(boxes):
        image = draw_bounding_boxes(image, boxes, labels=names, width=2)
    return image


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """A float image in [0, 1] (1 or 3 channels) as uint8 RGB."""
    image = image.detach().cpu()
    if image.dtype != torch.uint8:
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]


def fit_within(image: torch.Tensor, longest: int) -> torch.Tensor:
    """uint8 [3, H, W] scaled down (never up) so its longer side is at most ``longest``."""
    scale = longest / max(image.shape[-2:])
    if scale >= 1:
        return image
    resized = F.interpolate(image[None].float(), scale_factor=scale, mode="bilinear",
                            align_corners=False, antialias=True)[0]
    return resized.round().clamp(0, 255).to(torch.uint8)


def grid(rows: Sequence[Sequence[torch.Tensor]], pad: int = 4) -> torch.Tensor:
    """uint8 images laid out in rows (each row's images side by side, every
    cell the size of the largest image, white padding)."""
    height = max(image.shape[1] for row in rows for image in row)
    width = max(image.shape[2] for row in rows for image in row)
    columns = max(len(row) for row in rows)
    canvas = torch.full((3, len(rows) * (height + pad) + pad, columns * (width + pad) + pad),
                        255, dtype=torch.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            y, x = pad + r * (height + pad), pad + c * (width + pad)
            canvas[:, y:y + image.shape[1], x:x + image.shape[2]] = image
    return canvas
