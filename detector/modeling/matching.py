"""Matching predictions to ground truth, and balanced sampling of the matches."""

from __future__ import annotations

import torch
from torch import Tensor


class Matcher:
    """Assigns each prediction (column of an IoU matrix [G, P]) its best
    ground-truth index, or BELOW_LOW / BETWEEN_THRESHOLDS.

    With ``allow_low_quality_matches`` every ground truth also keeps the
    predictions it overlaps best, even below ``high`` (Faster R-CNN's RPN rule).
    """

    BELOW_LOW = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high: float, low: float, allow_low_quality_matches: bool = False):
        if low > high:
            raise ValueError(f"Matcher: low threshold {low} is above high threshold {high}")
        self.high, self.low = high, low
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, iou: Tensor) -> Tensor:
        if iou.shape[0] == 0:  # no ground truth: everything is background
            return torch.full((iou.shape[1],), self.BELOW_LOW, dtype=torch.int64,
                              device=iou.device)
        best_iou, matches = iou.max(dim=0)
        original = matches.clone()
        matches[best_iou < self.low] = self.BELOW_LOW
        matches[(best_iou >= self.low) & (best_iou < self.high)] = self.BETWEEN_THRESHOLDS
        if self.allow_low_quality_matches:
            best_per_gt = iou.max(dim=1).values
            _, predictions = torch.nonzero(iou == best_per_gt[:, None], as_tuple=True)
            matches[predictions] = original[predictions]
        return matches


class BalancedSampler:
    """Samples up to ``batch_size`` labels per image, at most
    ``positive_fraction`` of them positive (label >= 1), the rest background (0);
    ignored labels (< 0) are never sampled."""

    def __init__(self, batch_size: int, positive_fraction: float):
        if batch_size < 1 or not 0 < positive_fraction <= 1:
            raise ValueError(f"BalancedSampler: batch_size {batch_size} must be >= 1 and "
                             f"positive_fraction {positive_fraction} in (0, 1]")
        self.batch_size, self.positive_fraction = batch_size, positive_fraction

    def __call__(self, labels: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        positives, negatives = [], []
        for image_labels in labels:
            pos = torch.nonzero(image_labels >= 1).flatten()
            neg = torch.nonzero(image_labels == 0).flatten()
            num_pos = min(int(self.batch_size * self.positive_fraction), pos.numel())
            num_neg = min(self.batch_size - num_pos, neg.numel())
            pos = pos[torch.randperm(pos.numel(), device=pos.device)[:num_pos]]
            neg = neg[torch.randperm(neg.numel(), device=neg.device)[:num_neg]]
            pos_mask = torch.zeros_like(image_labels, dtype=torch.bool)
            neg_mask = torch.zeros_like(image_labels, dtype=torch.bool)
            pos_mask[pos] = True
            neg_mask[neg] = True
            positives.append(pos_mask)
            negatives.append(neg_mask)
        return positives, negatives
