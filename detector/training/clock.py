"""A run's wall time over every process that ran it: a callback that writes
its count into each checkpoint, so that a run resumed from a checkpoint counts
on from the time saved there (the hours between two processes are not
counted; nor is the work an interrupted process did after its last
checkpoint)."""

from __future__ import annotations

import time

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn

KEY = "run_wall_time_s"


class RunClock(pl.Callback):
    """``seconds()``: the time since ``started`` (a ``time.perf_counter()``
    reading taken when this process began the run) plus what the checkpoint it
    resumed from had counted; None when that checkpoint was written without a
    count. ``resumed_at_step``: that checkpoint's step (None for a run that
    started afresh)."""

    def __init__(self, started: float):
        self.started = started
        self.before: float | None = 0.0
        self.resumed_at_step: int | None = None

    def seconds(self) -> float | None:
        if self.before is None:
            return None
        return self.before + time.perf_counter() - self.started

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[KEY] = self.seconds()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # only a resumed fit goes on counting; testing the best checkpoint does not. (Taken
        # here, not when training starts: a run resumed after its last step trains no more.)
        if trainer.state.fn == TrainerFn.FITTING:
            self.before = checkpoint.get(KEY)
            self.resumed_at_step = int(checkpoint["global_step"])
