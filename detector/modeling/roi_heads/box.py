"""The box branch: pooled features → class scores and class-specific box
deltas; its loss and its inference (score threshold, per-class NMS)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image, remove_small_boxes

from ..boxes import BoxCoder, batched_nms


class TwoMLPHead(nn.Module):
    """FPN's box head: flatten, two fully connected layers with ReLU; with
    ``norm=True`` each layer is followed by BatchNorm (for training from scratch)."""

    def __init__(self, in_channels: int, representation_size: int = 1024, norm: bool = False):
        super().__init__()
        self.fc6 = nn.Linear(in_channels, representation_size, bias=not norm)
        self.fc7 = nn.Linear(representation_size, representation_size, bias=not norm)
        self.norm6 = nn.BatchNorm1d(representation_size) if norm else nn.Identity()
        self.norm7 = nn.BatchNorm1d(representation_size) if norm else nn.Identity()
        self.out_channels = representation_size

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.norm6(self.fc6(x.flatten(start_dim=1))), inplace=True)
        return F.relu(self.norm7(self.fc7(x)), inplace=True)


class BoxPredictor(nn.Module):
    """Class logits (background = 0) and 4 deltas per class."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)


class BoxBranch(nn.Module):
    """Head + predictor, with the loss and the inference of the box branch."""

    def __init__(self, head: nn.Module, predictor: BoxPredictor, *,
                 box_coder_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
                 score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 detections_per_image: int = 100, min_size: float = 1e-2):
        super().__init__()
        self.head, self.predictor = head, predictor
        self.box_coder = BoxCoder(box_coder_weights)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_image, self.min_size = detections_per_image, min_size

    def forward(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        return self.predictor(self.head(pooled))

    def loss(self, class_logits: Tensor, deltas: Tensor, labels: Tensor,
             regression_targets: Tensor) -> dict[str, Tensor]:
        """Cross-entropy over sampled proposals; smooth L1 on the deltas of the
        ground-truth class of positives, normalized by the sample count."""
        classification = F.cross_entropy(class_logits, labels)
        positive = torch.nonzero(labels > 0).flatten()
        deltas = deltas.reshape(deltas.shape[0], -1, 4)[positive, labels[positive]]
        deltas = deltas.to(regression_targets.dtype)  # float16/bfloat16 under autocast
        box = F.smooth_l1_loss(deltas, regression_targets[positive], beta=1 / 9,
                               reduction="sum") / max(labels.numel(), 1)
        return {"loss_classifier": classification, "loss_box_reg": box}

    def inference(self, class_logits: Tensor, deltas: Tensor, proposals: list[Tensor],
                  image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        num_classes = class_logits.shape[-1]
        boxes = self.box_coder.decode(deltas, torch.cat(proposals))  # float32 under autocast
        scores = F.softmax(class_logits.to(boxes.dtype), -1)
        counts = [p.shape[0] for p in proposals]
        results = []
        for image_boxes, image_scores, size in zip(boxes.split(counts), scores.split(counts),
                                                   image_sizes):
            image_boxes = clip_boxes_to_image(image_boxes, size)
            labels = torch.arange(num_classes, device=class_logits.device).expand_as(image_scores)
            # drop the background column, then one candidate per (proposal, class)
            image_boxes = image_boxes[:, 1:].reshape(-1, 4)
            image_scores = image_scores[:, 1:].reshape(-1)
            labels = labels[:, 1:].reshape(-1)
            keep = torch.nonzero(image_scores > self.score_thresh).flatten()
            image_boxes, image_scores, labels = image_boxes[keep], image_scores[keep], labels[keep]
            keep = remove_small_boxes(image_boxes, self.min_size)
            image_boxes, image_scores, labels = image_boxes[keep], image_scores[keep], labels[keep]
            keep = batched_nms(image_boxes, image_scores, labels, self.nms_thresh,
                              torch.sym_max(*size))
            keep = keep[: self.detections_per_image]
            results.append({"boxes": image_boxes[keep], "scores": image_scores[keep],
                            "labels": labels[keep]})
        return results
