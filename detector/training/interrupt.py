"""Stopping a run without losing it: Ctrl+C (SIGINT) or a scheduler's SIGTERM
lets the current training step finish, writes a checkpoint that resumes
exactly there, and ends the run."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class TrainingInterrupted(Exception):
    """Raised out of ``Trainer.fit`` once the interrupted run's checkpoint is written."""

    def __init__(self, checkpoint: Path, step: int):
        super().__init__(f"training interrupted after step {step}; "
                         f"resume with ckpt_path={checkpoint}")
        self.checkpoint, self.step = checkpoint, step


class SaveOnInterrupt(pl.Callback):
    """On SIGINT or SIGTERM, finish the step, save ``dirpath/filename`` and raise
    TrainingInterrupted. A second signal before the step ends interrupts at once
    (KeyboardInterrupt) without a checkpoint. The previous handlers come back
    when training ends."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, dirpath: str, filename: str = "last.ckpt"):
        self.path = Path(dirpath) / filename
        self.requested: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signum
        log.warning("%s received: stopping after this step (again to stop at once)",
                    signal.Signals(signum).name)

    def on_train_start(self, trainer, pl_module):
        self.requested = None
        if threading.current_thread() is not threading.main_thread():
            return  # handlers can only be installed from the main thread
        for name in self.SIGNALS:
            signum = getattr(signal, name)
            self._previous[signum] = signal.signal(signum, self._handle)

    def _restore_handlers(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def on_train_end(self, trainer, pl_module):
        self._restore_handlers()

    def on_exception(self, trainer, pl_module, exception):
        self._restore_handlers()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        requested = self.requested is not None
        if trainer.world_size > 1:  # a signal to one process stops them all
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if not requested:
            return
        # every process takes part in saving (the strategy writes from rank 0)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        trainer.save_checkpoint(partial, weights_only=False)  # optimizer and loops too: resumable
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        trainer.strategy.barrier("SaveOnInterrupt")
        raise TrainingInterrupted(self.path, trainer.global_step)
