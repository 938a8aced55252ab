"""The meta-architecture: features → proposals → detections."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.dropout import _DropoutNd

from .roi_heads import ROIHeads
from .rpn import RegionProposalNetwork
from .transform import ImageTransform
from .checks import check_images, check_targets


class GeneralizedRCNN(nn.Module):
    """Faster R-CNN / Mask R-CNN from parts built outside.

    Images are float tensors [3, H, W] in [0, 1]; targets are dicts with
    ``boxes`` (x1, y1, x2, y2 pixels), ``labels`` (int64, 0 = background) and
    for masks ``masks`` (uint8 [N, H, W]) and optionally ``has_mask`` (bool
    [N]: instances without a mask take no part in the mask loss). In
    training the model returns a dict of named losses; in eval a list of
    per-image dicts with ``boxes``, ``labels``, ``scores`` (and ``masks``
    [N, 1, H, W] probabilities) in the coordinates of the images given.
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
        self.mask_threshold = 0.5
        self.fused = False
        self.channels_last = False

    def configure_inference(self, score_thresh: float | None = None,
                            nms_thresh: float | None = None,
                            detections_per_image: int | None = None,
                            mask_threshold: float | None = None,
                            rpn_pre_nms_top_n: int | None = None,
                            rpn_post_nms_top_n: int | None = None) -> GeneralizedRCNN:
        """Sets what inference keeps (None leaves a setting as it is): the box
        branch's score threshold, per-class NMS IoU and detections per image;
        the mask probability that counts as inside (``mask_threshold``, read by
        evaluation and the pictures; the masks returned stay probabilities);
        the RPN's proposals per level before NMS and per image after it, at
        test time. Returns the model."""
        box = self.roi_heads.box_branch
        for name, value, low, high in (("score_thresh", score_thresh, 0.0, 1.0),
                                       ("nms_thresh", nms_thresh, 0.0, 1.0),
                                       ("mask_threshold", mask_threshold, 0.0, 1.0)):
            if value is not None and not low <= float(value) <= high:
                raise ValueError(f"inference {name} must be in [{low}, {high}], got {value!r}")
        for name, value in (("detections_per_image", detections_per_image),
                            ("rpn_pre_nms_top_n", rpn_pre_nms_top_n),
                            ("rpn_post_nms_top_n", rpn_post_nms_top_n)):
            if value is not None and (float(value) != int(value) or int(value) < 1):
                raise ValueError(f"inference {name} must be a positive integer, got {value!r}")
        if score_thresh is not None:
            box.score_thresh = float(score_thresh)
        if nms_thresh is not None:
            box.nms_thresh = float(nms_thresh)
        if detections_per_image is not None:
            box.detections_per_image = int(detections_per_image)
        if mask_threshold is not None:
            self.mask_threshold = float(mask_threshold)
        if rpn_pre_nms_top_n is not None:
            self.rpn.pre_nms_top_n["testing"] = int(rpn_pre_nms_top_n)
        if rpn_post_nms_top_n is not None:
            self.rpn.post_nms_top_n["testing"] = int(rpn_post_nms_top_n)
        return self

    def inference_settings(self) -> dict:
        """The current values of configure_inference's settings."""
        box = self.roi_heads.box_branch
        return {"score_thresh": box.score_thresh, "nms_thresh": box.nms_thresh,
                "detections_per_image": box.detections_per_image,
                "mask_threshold": self.mask_threshold,
                "rpn_pre_nms_top_n": self.rpn.pre_nms_top_n["testing"],
                "rpn_post_nms_top_n": self.rpn.post_nms_top_n["testing"]}

    def set_channels_last(self, enabled: bool = True) -> GeneralizedRCNN:
        """Runs every convolution in channels-last (NHWC) memory format: the
        4-D weights are stored NHWC and each batch is converted once, after the
        resize, so the feature maps of the backbone, the pyramid, the RPN and
        the mask head are NHWC throughout and the ROI operators read them
        without a copy. Faster on a CPU (benchmarks/README.md); the same results
        to float rounding (tests/test_channels_last.py). Returns the model."""
        self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        self.channels_last = bool(enabled)
        return self

    def fuse(self) -> GeneralizedRCNN:
        """For inference only: folds every BatchNorm that follows a convolution
        into it (detector.modeling.fuse; the same detections to float rounding, fewer
        layers). The model goes to eval mode and can no longer be trained or
        load a state dict saved unfused. Returns the model."""
        from .fuse import fold_batchnorm

        self.eval()
        fold_batchnorm(self)
        self.fused = True
        return self.set_channels_last(self.channels_last)  # folded weights keep the format

    def _features(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None):
        """The resized batch (channels-last when the model is), each image's
        size in it, the targets in its frame, and the backbone's features."""
        batch, sizes, targets = self.transform(images, targets)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch, sizes, targets, self.backbone(batch)

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        check_images(images)
        if self.training and self.fused:
            raise RuntimeError("this model was fused for inference (model.fuse()); load it "
                               "again to train it")
        if self.training:
            if targets is None:
                raise ValueError("GeneralizedRCNN: targets are required in training mode")
            check_targets(images, targets, self.num_classes, self.roi_heads.has_masks)
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        batch, sizes, targets, features = self._features(images, targets)
        proposals, rpn_losses = self.rpn(list(features.values()), sizes,
                                         tuple(batch.shape[-2:]), targets)
        detections, head_losses = self.roi_heads(features, proposals, sizes, targets)
        if self.training:
            return {**rpn_losses, **head_losses}
        return self.transform.to_original(detections, sizes, original_sizes)

    @torch.no_grad()
    def validation_losses(self, images: list[Tensor], targets: list[dict[str, Tensor]],
                          seed: int = 0) -> dict[str, Tensor]:
        """The training losses on held-out images, comparable with the
        training ones: the same terms, computed the way training computes them
        (the RPN's and ROI heads' sampling of anchors and proposals, their
        training proposal counts), but with every normalization (and dropout)
        layer in evaluation mode (running statistics, none updated), the resize at
        the evaluation size, and no gradient. The sampling draws from a
        generator seeded with ``seed``, so the losses repeat exactly and the
        training's random state is left untouched. The model's modes are
        restored afterwards."""
        with _validation_loss_mode(self, images, seed):
            return self.forward(images, targets)

    @torch.no_grad()
    def detections_and_validation_losses(self, images: list[Tensor],
                                         targets: list[dict[str, Tensor]], seed: int = 0
                                         ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """What a validation step needs, from one pass of the backbone: the
        detections of ``self(images)`` in eval mode and the losses of
        ``validation_losses(images, targets, seed)``, the same values (both
        read the same features: the evaluation resize, normalization in eval
        mode). The model must be in eval mode."""
        if self.training:
            raise RuntimeError("detections_and_validation_losses() needs the model in eval "
                               "mode: call model.eval() first")
        check_images(images)
        check_targets(images, targets, self.num_classes, self.roi_heads.has_masks)
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        batch, sizes, resized, features = self._features(images, targets)
        maps, batch_size = list(features.values()), tuple(batch.shape[-2:])
        proposals, _ = self.rpn(maps, sizes, batch_size)
        detections, _ = self.roi_heads(features, proposals, sizes)
        detections = self.transform.to_original(detections, sizes, original_sizes)
        with _validation_loss_mode(self, images, seed):
            proposals, rpn_losses = self.rpn(maps, sizes, batch_size, resized)
            _, head_losses = self.roi_heads(features, proposals, sizes, resized)
        return detections, {**rpn_losses, **head_losses}

    @torch.no_grad()
    def predict(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Detections for a list of images of any sizes (the model must be in eval mode)."""
        if self.training:
            raise RuntimeError("predict() needs the model in eval mode: call model.eval() first")
        return self.forward(images)


@contextlib.contextmanager
def _validation_loss_mode(model: GeneralizedRCNN, images: list[Tensor], seed: int):
    """The loss path (train mode) with normalization, dropout and the resize as
    in evaluation, its sampling drawn from a generator seeded with ``seed``
    (forked: the caller's random state is left as it was)."""
    modes = {module: module.training for module in model.modules()}
    devices = [images[0].device] if images and images[0].is_cuda else []
    try:
        model.train()
        model.transform.eval()
        for module in model.modules():
            if isinstance(module, (_NormBase, _DropoutNd)):
                module.eval()
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
    finally:
        for module, training in modes.items():
            module.training = training
