"""Early stopping as a callback setting: training stops once the monitored
validation metric has not improved for ``patience`` validations in a row
(Lightning's EarlyStopping). Off unless a patience is given, so that a
configured run trains for the steps it asks for."""

from __future__ import annotations

from pytorch_lightning.callbacks import EarlyStopping


def early_stopping(monitor: str, patience: int | None = None, min_delta: float = 0.0,
                   mode: str = "max") -> EarlyStopping | None:
    """EarlyStopping on ``monitor`` (a validation metric: checked at the end
    of each validation, not of each training epoch), or None when
    ``patience`` is None (the callback is then left out). An improvement is
    a change of more than ``min_delta`` in the direction of ``mode``."""
    if patience is None:
        return None
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(f"callbacks.early_stopping.patience must be a positive number of "
                         f"validations (or null: off), got {patience!r}")
    if float(min_delta) < 0:
        raise ValueError(f"callbacks.early_stopping.min_delta must be >= 0, got {min_delta!r}")
    return EarlyStopping(monitor=monitor, patience=patience, min_delta=float(min_delta),
                         mode=mode, check_on_train_epoch_end=False, verbose=True)
