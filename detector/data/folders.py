"""Writing a dataset folder once, so that no reader ever sees half of it,
however many processes (the runs of a parallel sweep) ask for it at once."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _exclusive(lock: Path, what: Path):
    """Holds an exclusive lock on the file ``lock`` (POSIX flock; elsewhere no
    lock, and the rename in publish_folder alone keeps readers safe)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process to finish writing %s", what)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish_folder(final: Path, write: Callable[[Path], None],
                   complete: Callable[[Path], bool]) -> None:
    """Unless ``final`` is already complete (``complete(final)``), ``write(tmp)``
    fills a hidden temporary folder beside it, which is then renamed to
    ``final`` in one step. One process writes at a time (a lock file beside
    the folder): the others wait and then find the folder complete. A broken
    folder in the way is replaced; an interrupted write leaves only the
    temporary folder, which is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(final.parent / f".{final.name}.lock", final):
        if not complete(final):
            _write_and_rename(final, write, complete)


def _write_and_rename(final: Path, write: Callable[[Path], None],
                      complete: Callable[[Path], bool]) -> None:
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        write(tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first, or a broken folder is in the way
            if not complete(final):
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
