"""Progress that reads well wherever it goes: a live bar on a terminal, plain
lines in a file or a batch job's log (no carriage-return stream)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.callbacks.progress.progress_bar import ProgressBar
from pytorch_lightning.utilities import rank_zero_only


def progress(every_s: float = 30.0, stream: TextIO | None = None) -> ProgressBar:
    """Lightning's live bar when stderr (where it draws) is a terminal, else
    LineProgress, a line every ``every_s`` seconds."""
    stream = stream or sys.stderr
    if stream.isatty():
        return TQDMProgressBar()
    return LineProgress(every_s)


def _format(value) -> str:
    value = value.item() if hasattr(value, "item") else value
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class LineProgress(ProgressBar):
    """One plain line every ``every_s`` seconds of training (and at its first
    and last step), and one when each validation or test ends: step, epoch,
    rate, time left, and the metrics the module shows in the progress bar."""

    def __init__(self, every_s: float = 30.0):
        super().__init__()
        if every_s <= 0:
            raise ValueError(f"every_s must be positive, got {every_s}")
        self.every_s = every_s
        self._enabled = True
        self._started = self._last = 0.0
        self._first_step = 0
        self._phase_started = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @rank_zero_only
    def _line(self, text: str) -> None:
        if self._enabled:
            print(text, flush=True)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = self._last = time.monotonic()
        self._first_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.monotonic()
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        last = total != float("inf") and step >= total
        if now - self._last < self.every_s and step != self._first_step + 1 and not last:
            return
        self._last = now
        done = step - self._first_step
        rate = done / max(now - self._started, 1e-9)
        left = f", {(total - step) / rate / 60:.1f} min left" if total != float("inf") else ""
        of = f"/{total}" if total != float("inf") else ""
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        shown = " ".join(f"{k}={_format(v)}" for k, v in metrics.items())
        self._line(f"step {step}{of} (epoch {trainer.current_epoch}) {rate:.2f} steps/s{left}"
                   f"  {shown}".rstrip())

    def on_validation_start(self, trainer, pl_module) -> None:
        self._phase_started = time.monotonic()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        shown = " ".join(f"{k}={_format(v)}" for k, v in trainer.callback_metrics.items()
                         if k == "val/loss" or (k.startswith("val/") and k.endswith("_AP")))
        self._line(f"validation at step {trainer.global_step}: {self.total_val_batches} "
                   f"batches in {time.monotonic() - self._phase_started:.0f} s  {shown}".rstrip())

    def on_test_start(self, trainer, pl_module) -> None:
        self._phase_started = time.monotonic()

    def on_test_end(self, trainer, pl_module) -> None:
        self._line(f"test: {sum(trainer.num_test_batches)} batches in "
                   f"{time.monotonic() - self._phase_started:.0f} s")
