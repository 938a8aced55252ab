"""Stopping a run without losing it. Ctrl+C (SIGINT) or a scheduler's SIGTERM:

- during training, lets the current step finish, writes a checkpoint that
  resumes exactly there, and ends the run;
- during a validation inside training, stops it at the next batch and writes
  the same checkpoint (the validation is redone on resuming);
- during the test (or a validation run alone), stops it at the next batch;
  what was written before (checkpoints, earlier results) stays complete;
- anywhere else (writing the data, building the model), stops at once.

Inside a submitit job (hydra/launcher=slurm or submitit_local), submitit's
requeue signal (SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise, sent
before the time limit) is handled the same way, and the run then hands the
signal to submitit, which requeues the job (``requeue_if_asked``); the
requeued job resumes from last.ckpt (resume=auto).

A second signal always stops at once. Files are written whole or not at all
(a temporary name, then a rename), so nothing is left half-written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from pathlib import Path

import pytorch_lightning as pl

log = logging.getLogger(__name__)

SIGNALS = ("SIGINT", "SIGTERM")


def requeue_signal() -> int | None:
    """The signal by which submitit asks a job of its to stop and be
    requeued, when this process is such a job (None otherwise)."""
    if not os.environ.get("SUBMITIT_EXECUTOR") or os.name != "posix":
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


class StopNow(BaseException):
    """A signal where the run cannot wait (a second one, or outside the
    training, validation and test loops). A BaseException, like
    KeyboardInterrupt, so that nothing catches it by accident, but not one:
    Lightning turns KeyboardInterrupt into exit code 1."""

    def __init__(self, signum: int):
        super().__init__(f"{signal.Signals(signum).name} received: stopped at once")
        self.signum = signum


class RunInterrupted(Exception):
    """Raised out of a Trainer call stopped by a signal, once what it must
    write is written. ``checkpoint``: where to resume from (None: nothing to
    resume, e.g. a test)."""

    def __init__(self, message: str, phase: str, step: int, checkpoint: Path | None):
        super().__init__(message)
        self.phase, self.step, self.checkpoint = phase, step, checkpoint


class TrainingInterrupted(RunInterrupted):
    """Training (or a validation within it) stopped; ``checkpoint`` resumes it."""

    def __init__(self, checkpoint: Path, step: int, phase: str = "training"):
        super().__init__(f"{phase} interrupted after step {step}; "
                         f"resume with ckpt_path={checkpoint}", phase, step, checkpoint)


class EvaluationInterrupted(RunInterrupted):
    """A test or a validation run alone stopped before its end."""

    def __init__(self, phase: str, step: int):
        super().__init__(f"the {phase} was interrupted; its results were not written",
                         phase, step, None)


class _Signals:
    """The process's SIGINT/SIGTERM handler while a run is on. Inside a loop
    (``deferring``) the first signal is only recorded, for the loop to act on
    at the next batch end; otherwise, or the second time, StopNow is raised."""

    def __init__(self):
        self.requested: int | None = None
        self.deferring = False
        self._previous: dict[int, object] = {}

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def _handle(self, signum, frame):
        if self.deferring and self.requested is None:
            self.requested = signum
            log.warning("%s received: stopping after this batch (again to stop at once)",
                        signal.Signals(signum).name)
            return
        raise StopNow(signum)

    def install(self) -> bool:
        """Installs the handler (main thread only); returns whether it did."""
        if self.installed or threading.current_thread() is not threading.main_thread():
            return False
        self.requested = None
        for signum in self.signums():
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    @staticmethod
    def signums() -> list[int]:
        requeue = requeue_signal()
        return [getattr(signal, name) for name in SIGNALS] + ([requeue] if requeue else [])

    @property
    def requeue_asked(self) -> bool:
        """Whether the signal that stopped the run asks for a requeue."""
        return self.requested is not None and self.requested == requeue_signal()

    def requeue_if_asked(self, signum: int | None = None) -> None:
        """When the run was stopped by submitit's requeue signal (``signum``,
        or the one recorded), hands it to submitit's own handler, which
        requeues the job and exits (SystemExit); otherwise returns."""
        signum = self.requested if signum is None else signum
        handler = self._previous.get(signum) if signum is not None else None
        if signum is None or signum != requeue_signal() or not callable(handler):
            return
        log.warning("asking submitit to requeue the job (it resumes from checkpoints/last.ckpt)")
        self.restore()
        handler(signum, None)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        self.deferring, self.requested = False, None

    @contextlib.contextmanager
    def watching(self):
        """The handler for the duration of a run (if not already in place)."""
        installed = self.install()
        try:
            yield self
        finally:
            if installed:
                self.restore()


signals = _Signals()


class SaveOnInterrupt(pl.Callback):
    """Acts on a recorded signal at the end of each training, validation and
    test batch (see the module's docstring). In training and in the
    validations within it, every process saves ``dirpath/filename`` (resumable:
    optimizer and loops too) and TrainingInterrupted is raised; in a test,
    EvaluationInterrupted. Installs the signal handler itself when the run did
    not (a Trainer used directly) and puts the previous one back at the end."""

    def __init__(self, dirpath: str, filename: str = "last.ckpt"):
        self.path = Path(dirpath) / filename
        self._installed_here = False

    # the handler's life -------------------------------------------------
    def _start(self):
        if not signals.installed:
            self._installed_here = signals.install()
        signals.deferring = True

    def _stop(self):
        signals.deferring = False
        if self._installed_here:
            signals.restore()
            self._installed_here = False

    def on_train_start(self, trainer, pl_module):
        self._start()

    def on_validation_start(self, trainer, pl_module):
        self._start()

    def on_test_start(self, trainer, pl_module):
        self._start()

    def on_train_end(self, trainer, pl_module):
        self._stop()

    def on_test_end(self, trainer, pl_module):
        self._stop()

    def on_validation_end(self, trainer, pl_module):
        if trainer.state.fn != "fit":  # a validation run alone; in fit, training goes on
            self._stop()

    def on_exception(self, trainer, pl_module, exception):
        self._stop()

    # acting on a signal -------------------------------------------------
    @staticmethod
    def _requested(trainer) -> bool:
        requested = signals.requested is not None
        if trainer.world_size > 1:  # a signal to one process stops them all
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        return requested

    def _save_and_stop(self, trainer, phase: str):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        trainer.save_checkpoint(partial, weights_only=False)  # optimizer and loops too: resumable
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        trainer.strategy.barrier("SaveOnInterrupt")
        raise TrainingInterrupted(self.path, trainer.global_step, phase)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._requested(trainer):
            self._save_and_stop(trainer, "training")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0):
        if not self._requested(trainer):
            return
        if trainer.state.fn == "fit":
            self._save_and_stop(trainer, "validation")
        raise EvaluationInterrupted("validation", trainer.global_step)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                          dataloader_idx=0):
        if self._requested(trainer):
            raise EvaluationInterrupted("test", trainer.global_step)
