"""The mask branch: pooled features → a mask per class; its loss (binary
cross-entropy against ground-truth masks cropped to the proposals) and its
inference (the mask of the predicted class)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import ops


class MaskHead(nn.Module):
    """FPN's mask head: a stack of 3x3 convolutions with ReLU; with
    ``norm=True`` each is followed by BatchNorm (for training from scratch)."""

    def __init__(self, in_channels: int, layers: Sequence[int] = (256, 256, 256, 256),
                 norm: bool = False):
        super().__init__()
        convs, norms = [], []
        for out_channels in layers:
            conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not norm)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            convs.append(conv)
            norms.append(nn.BatchNorm2d(out_channels) if norm else nn.Identity())
            in_channels = out_channels
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.out_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x)), inplace=True)  # a fresh tensor: no copy needed
        return x


class MaskPredictor(nn.Module):
    """2x upsampling (transposed conv + ReLU), then one mask logit map per class."""

    def __init__(self, in_channels: int, hidden: int, num_classes: int):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(in_channels, hidden, 2, stride=2)
        self.logits = nn.Conv2d(hidden, num_classes, 1)
        for layer in (self.upsample, self.logits):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(F.relu(self.upsample(x), inplace=True))


class MaskBranch(nn.Module):
    """Head + predictor, with the loss and the inference of the mask branch."""

    def __init__(self, head: nn.Module, predictor: nn.Module):
        super().__init__()
        self.head, self.predictor = head, predictor

    def forward(self, pooled: Tensor) -> Tensor:
        return self.predictor(self.head(pooled))

    @staticmethod
    def targets(gt_masks: list[Tensor], proposals: list[Tensor], matched: list[Tensor],
                size: int) -> Tensor:
        """Each positive proposal's ground-truth mask, cropped to the proposal and
        resampled to size x size (ROI Align of the mask, one sample per bin centre
        area: no quantization)."""
        out = []
        for masks, boxes, index in zip(gt_masks, proposals, matched):
            rois = torch.cat([index[:, None].to(boxes.dtype), boxes], dim=1)
            out.append(ops.roi_align(masks[:, None].to(boxes.dtype), rois, size, 1.0)[:, 0])
        return torch.cat(out)

    def loss(self, mask_logits: Tensor, labels: Tensor, targets: Tensor) -> dict[str, Tensor]:
        if targets.numel() == 0:
            return {"loss_mask": mask_logits.sum() * 0}
        logits = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
        return {"loss_mask": F.binary_cross_entropy_with_logits(logits, targets)}

    @staticmethod
    def inference(mask_logits: Tensor, labels: list[Tensor]) -> list[Tensor]:
        """Probabilities [n_i, 1, M, M] of each detection's own class, per image
        (float32 under autocast, like the boxes and scores)."""
        all_labels = torch.cat(labels)
        probs = mask_logits[torch.arange(all_labels.shape[0], device=all_labels.device),
                            all_labels].float().sigmoid()[:, None]
        return list(probs.split([label.shape[0] for label in labels]))
