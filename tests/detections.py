"""Comparing two detectors' outputs for one image without depending on their
order: detections of near-equal scores can come out in another order on
another CPU (float rounding, thread counts), so each detection is matched to
the other side's by label and box overlap before values are compared."""

import torch
from torchvision.ops import box_iou


def match(ours: dict, theirs: dict, min_iou: float, max_offset: float = 0.0
          ) -> list[tuple[int, int]]:
    """Pairs (our index, their index): each of theirs, by descending score,
    takes the unmatched detection of ours with the same label that overlaps it
    most, if that overlap is at least ``min_iou``; a box whose every coordinate
    is within ``max_offset`` pixels of theirs counts as overlapping fully (an
    untrained model's boxes can be a tenth of a pixel wide, where float rounding
    alone moves the IoU by more than a percent)."""
    ious = box_iou(theirs["boxes"].double(), ours["boxes"].double())
    if max_offset > 0 and ious.numel():
        offsets = (theirs["boxes"].double()[:, None] - ours["boxes"].double()[None]).abs()
        ious[offsets.amax(dim=-1) <= max_offset] = 1.0
    ious[theirs["labels"][:, None] != ours["labels"][None, :]] = -1
    pairs, taken = [], torch.zeros(len(ours["boxes"]), dtype=torch.bool)
    for t in torch.argsort(theirs["scores"], descending=True, stable=True).tolist():
        row = ious[t].clone()
        row[taken] = -1
        if len(row) and row.max() >= min_iou:
            o = int(row.argmax())
            taken[o] = True
            pairs.append((o, t))
    return pairs


def match_stronger_half(ours: dict, theirs: dict, min_iou: float = 0.99
                        ) -> tuple[list[tuple[int, int]], dict]:
    """match() against the half of theirs scoring at or above their median
    score, and that half: an untrained model's weaker detections are too close
    in score to each other to survive float rounding in the same set."""
    strong = theirs["scores"] >= theirs["scores"].median()
    top = {k: v[strong] for k, v in theirs.items()}
    return match(ours, top, min_iou), top


def assert_same_detections(ours: dict, theirs: dict, *, score_atol: float, box_atol: float,
                           mask_atol: float | None = None, min_iou: float = 0.99) -> None:
    """The same detections in any order: as many, each of theirs matched to one
    of ours with its label, boxes within ``box_atol`` pixels, scores within
    ``score_atol``, and (when given) mask probabilities within ``mask_atol``."""
    assert len(ours["boxes"]) == len(theirs["boxes"]), (len(ours["boxes"]), len(theirs["boxes"]))
    pairs = match(ours, theirs, min_iou, max_offset=box_atol)
    assert len(pairs) == len(theirs["boxes"]), f"{len(theirs['boxes']) - len(pairs)} unmatched"
    o, t = (torch.tensor(i, dtype=torch.int64) for i in zip(*pairs)) if pairs else (
        torch.zeros(0, dtype=torch.int64),) * 2
    torch.testing.assert_close(ours["scores"][o], theirs["scores"][t], rtol=0, atol=score_atol)
    torch.testing.assert_close(ours["boxes"][o], theirs["boxes"][t], rtol=0, atol=box_atol)
    if mask_atol is not None:
        torch.testing.assert_close(ours["masks"][o], theirs["masks"][t], rtol=0, atol=mask_atol)
