"""ROI heads: matching and sampling proposals in training, then the box branch
and (for Mask R-CNN) the mask branch, each with its own pooler."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from ..boxes import BoxCoder, geometry_dtype
from ..matching import BalancedSampler, Matcher
from ..poolers import Pooler
from .box import BoxBranch
from .mask import MaskBranch


class ROIHeads(nn.Module):
    """Wires poolers and branches.

    Args:
        feature_names: the backbone features the poolers read, finest first.
        box_pooler, box_branch: pooling and box head for every proposal.
        mask_pooler, mask_branch: the same for masks (None for Faster R-CNN).
    """

    def __init__(self, feature_names: Sequence[str], box_pooler: Pooler, box_branch: BoxBranch,
                 mask_pooler: Pooler | None = None, mask_branch: MaskBranch | None = None, *,
                 fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5,
                 batch_size_per_image: int = 512, positive_fraction: float = 0.25):
        super().__init__()
        if (mask_pooler is None) != (mask_branch is None):
            raise ValueError("ROIHeads: give both mask_pooler and mask_branch, or neither")
        self.feature_names = list(feature_names)
        self.box_pooler, self.box_branch = box_pooler, box_branch
        self.mask_pooler, self.mask_branch = mask_pooler, mask_branch
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)

    @property
    def has_masks(self) -> bool:
        return self.mask_branch is not None

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor],
                image_sizes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        maps = [features[name] for name in self.feature_names]
        if self.training:
            if targets is None:
                raise ValueError("ROIHeads: targets are required in training")
            return [], self._losses(maps, proposals, targets)
        logits, deltas = self.box_branch(self.box_pooler(maps, proposals))
        detections = self.box_branch.inference(logits, deltas, proposals, image_sizes)
        if self.has_masks:
            boxes = [d["boxes"] for d in detections]
            mask_logits = self.mask_branch(self.mask_pooler(maps, boxes))
            probs = MaskBranch.inference(mask_logits, [d["labels"] for d in detections])
            for d, p in zip(detections, probs):
                d["masks"] = p
        return detections, {}

    def _sample(self, proposals: list[Tensor], targets: list[dict[str, Tensor]]):
        """Proposals (with the ground truth added) sampled per image, with their
        class labels, matched ground-truth index and regression targets."""
        coder: BoxCoder = self.box_branch.box_coder
        labels, matches = [], []
        # in float32 even if the proposals come in float16/bfloat16 (boxes.geometry_dtype)
        proposals = [torch.cat([p, t["boxes"]]).to(geometry_dtype(p.dtype))
                     for p, t in zip(proposals, targets)]
        for boxes, target in zip(proposals, targets):
            match = self.matcher(box_iou(target["boxes"], boxes))
            label = (target["labels"][match.clamp(min=0)] if target["labels"].numel()
                     else torch.zeros_like(match))
            label[match == Matcher.BELOW_LOW] = 0
            label[match == Matcher.BETWEEN_THRESHOLDS] = -1
            labels.append(label)
            matches.append(match.clamp(min=0))
        positives, negatives = self.sampler(labels)
        sampled_boxes, sampled_labels, sampled_matches, regression = [], [], [], []
        for boxes, label, match, pos, neg, target in zip(proposals, labels, matches, positives,
                                                        negatives, targets):
            keep = torch.nonzero(pos | neg).flatten()
            boxes, label, match = boxes[keep], label[keep], match[keep]
            gt = target["boxes"].to(boxes.dtype)
            matched_gt = gt[match] if gt.numel() else torch.zeros_like(boxes)
            sampled_boxes.append(boxes)
            sampled_labels.append(label)
            sampled_matches.append(match)
            regression.append(coder.encode(matched_gt, boxes))
        return sampled_boxes, sampled_labels, sampled_matches, regression

    def _losses(self, maps: list[Tensor], proposals: list[Tensor],
                targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        boxes, labels, matches, regression = self._sample(proposals, targets)
        logits, deltas = self.box_branch(self.box_pooler(maps, boxes))
        losses = self.box_branch.loss(logits, deltas, torch.cat(labels), torch.cat(regression))
        if self.has_masks:
            # positives matched to an instance without a mask (has_mask False)
            # take no part in the mask loss
            positive = [torch.nonzero((label > 0) & _with_mask(t, m)).flatten()
                        for label, t, m in zip(labels, targets, matches)]
            pos_boxes = [b[p] for b, p in zip(boxes, positive)]
            mask_logits = self.mask_branch(self.mask_pooler(maps, pos_boxes))
            mask_targets = MaskBranch.targets(
                [t["masks"] for t in targets], pos_boxes,
                [m[p] for m, p in zip(matches, positive)], mask_logits.shape[-1])
            pos_labels = torch.cat([label[p] for label, p in zip(labels, positive)])
            losses.update(self.mask_branch.loss(mask_logits, pos_labels, mask_targets))
        return losses


def _with_mask(target: dict[str, Tensor], matched: Tensor) -> Tensor:
    """Whether each sampled proposal's matched instance has a ground-truth
    mask (every instance has one when the target carries no ``has_mask``)."""
    flags = target.get("has_mask")
    if flags is None or flags.numel() == 0:
        return torch.ones_like(matched, dtype=torch.bool)
    return flags.to(matched.device)[matched]
