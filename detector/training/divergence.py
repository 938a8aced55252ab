"""A run that diverges stops at once and says so: a non-finite loss ends
training with an error naming the step, the loss terms that went non-finite
and the last good checkpoint, and no checkpoint with non-finite weights is ever
written (so none replaces a good one)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


class TrainingDiverged(RuntimeError):
    """Raised out of ``Trainer.fit`` when the loss or the weights stop being finite."""

    def __init__(self, message: str, step: int, checkpoint: str | None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


def non_finite_terms(losses: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The loss terms that are NaN or infinite, with their values."""
    return {name: float(value.detach()) for name, value in losses.items()
            if not bool(torch.isfinite(value).all())}


def non_finite_parameters(module: nn.Module, limit: int = 5) -> list[str]:
    """Names of (up to ``limit``) parameters and buffers holding NaN or inf."""
    bad = []
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad.append(name)
            if len(bad) == limit:
                break
    return bad


def last_good_checkpoint(trainer) -> str | None:
    """The newest checkpoint file the run's ModelCheckpoint callbacks wrote."""
    paths = {Path(p) for c in trainer.checkpoint_callbacks
             for p in (c.last_model_path, c.best_model_path) if p}
    existing = [p for p in paths if p.is_file()]
    return str(max(existing, key=lambda p: p.stat().st_mtime)) if existing else None


def describe(step: int, terms: Mapping[str, float], lr: float | None,
             checkpoint: str | None) -> str:
    shown = ", ".join(f"{name} = {value}" for name, value in terms.items())
    lr_text = f" (learning rate {lr:g})" if lr is not None and math.isfinite(lr) else ""
    fix = "lower module.lr (or raise module.warmup_steps, or set trainer.gradient_clip_val)"
    where = (f"the last good checkpoint is {checkpoint}: {fix} and resume from it "
             f"(ckpt_path=...) or start again" if checkpoint else
             f"no checkpoint was written before it: {fix} and start again")
    return f"training diverged at step {step}{lr_text}: {shown}. The run stopped; {where}"
