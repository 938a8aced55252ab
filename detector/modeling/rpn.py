"""Region proposal network: head, proposal decoding and selection, training
targets and losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou, clip_boxes_to_image, remove_small_boxes

from .anchors import AnchorGenerator
from .boxes import BoxCoder, batched_nms, geometry_dtype
from .matching import BalancedSampler, Matcher


class RPNHead(nn.Module):
    """A shared 3x3 conv, then per anchor one objectness logit and 4 box deltas."""

    def __init__(self, in_channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.objectness = nn.Conv2d(in_channels, num_anchors, 1)
        self.deltas = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        hidden = [F.relu(self.conv(f), inplace=True) for f in features]
        return [self.objectness(h) for h in hidden], [self.deltas(h) for h in hidden]


def _flatten(maps: list[Tensor], columns: int) -> Tensor:
    """[N, A * columns, H, W] per level → [N, sum(H * W * A), columns], ordered
    by level, cell, anchor (the anchor generator's order)."""
    out = []
    for m in maps:
        n, _, h, w = m.shape
        out.append(m.view(n, -1, columns, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, columns))
    return torch.cat(out, dim=1)


class RegionProposalNetwork(nn.Module):
    """Proposes boxes from anchors: objectness and deltas per anchor, then per
    level the top-scoring ``pre_nms_top_n``, clipped, small ones removed,
    NMS per level, and the best ``post_nms_top_n`` per image."""

    def __init__(self, anchor_generator: AnchorGenerator, head: RPNHead, *,
                 fg_iou_thresh: float = 0.7, bg_iou_thresh: float = 0.3,
                 batch_size_per_image: int = 256, positive_fraction: float = 0.5,
                 pre_nms_top_n: dict[str, int] | None = None,
                 post_nms_top_n: dict[str, int] | None = None,
                 nms_thresh: float = 0.7, score_thresh: float = 0.0, min_size: float = 1e-3):
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n = dict(pre_nms_top_n or {"training": 2000, "testing": 1000})
        self.post_nms_top_n = dict(post_nms_top_n or {"training": 2000, "testing": 1000})
        self.nms_thresh, self.score_thresh, self.min_size = nms_thresh, score_thresh, min_size

    def _mode(self) -> str:
        return "training" if self.training else "testing"

    def forward(self, features: list[Tensor], image_sizes: list[tuple[int, int]],
                batch_size: tuple[int, int],
                targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """features: one [N, C, H, W] map per level; image_sizes: (h, w) of each
        resized image; batch_size: (h, w) of the padded batch."""
        objectness, deltas = self.head(features)
        # anchors, decoding and matching in float32 even under autocast (the
        # head's outputs may be float16/bfloat16; boxes.geometry_dtype)
        anchors = self.anchor_generator(batch_size, [f.shape[-2:] for f in features],
                                        geometry_dtype(features[0].dtype), features[0].device)
        per_level = [o.shape[1] * o.shape[2] * o.shape[3] for o in objectness]
        objectness = _flatten(objectness, 1).squeeze(2).to(anchors.dtype)  # [N, total]
        deltas = _flatten(deltas, 4).to(anchors.dtype)  # [N, total, 4]
        n = objectness.shape[0]
        proposals = self.box_coder.decode(deltas.detach().reshape(-1, 4),
                                          anchors.repeat(n, 1)).view(n, -1, 4)
        boxes = self.select_proposals(proposals, objectness.detach(), image_sizes, per_level)
        losses = {}
        if self.training:
            if targets is None:
                raise ValueError("RegionProposalNetwork: targets are required in training")
            losses = self.loss(objectness, deltas, anchors, targets)
        return boxes, losses

    def select_proposals(self, proposals: Tensor, objectness: Tensor,
                         image_sizes: list[tuple[int, int]], per_level: list[int]) -> list[Tensor]:
        n = proposals.shape[0]
        levels = torch.cat([torch.full((count,), i, dtype=torch.int64, device=proposals.device)
                            for i, count in enumerate(per_level)])
        top = []
        offset = 0
        for count in per_level:
            k = min(self.pre_nms_top_n[self._mode()], count)
            top.append(objectness[:, offset:offset + count].topk(k, dim=1).indices + offset)
            offset += count
        top = torch.cat(top, dim=1)
        rows = torch.arange(n, device=proposals.device)[:, None]
        scores = torch.sigmoid(objectness[rows, top])
        proposals, levels = proposals[rows, top], levels[top]
        result = []
        for boxes, image_scores, image_levels, size in zip(proposals, scores, levels, image_sizes):
            boxes = clip_boxes_to_image(boxes, size)
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, image_scores, image_levels = boxes[keep], image_scores[keep], image_levels[keep]
            keep = torch.nonzero(image_scores >= self.score_thresh).flatten()
            boxes, image_scores, image_levels = boxes[keep], image_scores[keep], image_levels[keep]
            keep = batched_nms(boxes, image_scores, image_levels, self.nms_thresh,
                              torch.sym_max(*size))
            result.append(boxes[keep[: self.post_nms_top_n[self._mode()]]])
        return result

    def loss(self, objectness: Tensor, deltas: Tensor, anchors: Tensor,
             targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        labels, regression_targets = [], []
        for target in targets:
            gt = target["boxes"]
            matches = self.matcher(box_iou(gt, anchors))
            image_labels = (matches >= 0).to(objectness.dtype)
            image_labels[matches == Matcher.BETWEEN_THRESHOLDS] = -1.0
            matched = gt[matches.clamp(min=0)] if gt.numel() else torch.zeros_like(anchors)
            labels.append(image_labels)
            regression_targets.append(self.box_coder.encode(matched, anchors))
        positives, negatives = self.sampler(labels)
        positive = torch.cat(positives)
        sampled = positive | torch.cat(negatives)
        labels, regression_targets = torch.cat(labels), torch.cat(regression_targets)
        objectness, deltas = objectness.reshape(-1), deltas.reshape(-1, 4)
        count = max(int(sampled.sum()), 1)
        box_loss = F.smooth_l1_loss(deltas[positive], regression_targets[positive],
                                    beta=1 / 9, reduction="sum") / count
        objectness_loss = F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled])
        return {"loss_rpn_objectness": objectness_loss, "loss_rpn_box": box_loss}
