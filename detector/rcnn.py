"""The meta-architecture: features → proposals → detections."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .roi_heads import ROIHeads
from .rpn import RegionProposalNetwork
from .transform import ImageTransform
from .validation import check_images, check_targets


class GeneralizedRCNN(nn.Module):
    """Faster R-CNN / Mask R-CNN from parts built outside.

    Images are float tensors [3, H, W] in [0, 1]; targets are dicts with
    ``boxes`` (x1, y1, x2, y2 pixels), ``labels`` (int64, 0 = background) and
    for masks ``masks`` (uint8 [N, H, W]). In training the model returns a dict
    of named losses; in eval a list of per-image dicts with ``boxes``,
    ``labels``, ``scores`` (and ``masks`` [N, 1, H, W] probabilities) in the
    coordinates of the images given.
    """

    def __init__(self, backbone: nn.Module, rpn: RegionProposalNetwork, roi_heads: ROIHeads,
                 transform: ImageTransform, num_classes: int,
                 class_names: list[str] | None = None, category_ids: list[int] | None = None):
        super().__init__()
        self.backbone, self.rpn, self.roi_heads = backbone, rpn, roi_heads
        self.transform = transform
        self.num_classes = num_classes
        self.class_names = class_names
        # label i (1..num_classes - 1) is the data's category category_ids[i - 1];
        # None: labels are the category ids (torchvision's COCO models)
        self.category_ids = category_ids

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        check_images(images)
        if self.training:
            if targets is None:
                raise ValueError("GeneralizedRCNN: targets are required in training mode")
            check_targets(images, targets, self.num_classes, self.roi_heads.has_masks)
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        batch, sizes, targets = self.transform(images, targets)
        features = self.backbone(batch)
        proposals, rpn_losses = self.rpn(list(features.values()), sizes,
                                         tuple(batch.shape[-2:]), targets)
        detections, head_losses = self.roi_heads(features, proposals, sizes, targets)
        if self.training:
            return {**rpn_losses, **head_losses}
        return self.transform.to_original(detections, sizes, original_sizes)

    @torch.no_grad()
    def predict(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Detections for a list of images of any sizes (the model must be in eval mode)."""
        if self.training:
            raise RuntimeError("predict() needs the model in eval mode: call model.eval() first")
        return self.forward(images)
