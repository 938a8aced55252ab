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
    lock, and the rename in publish_folder alone keeps readers safe). The
    holder removes the file before letting go, so nothing is left beside the
    folder; a process that locked a file already removed tries again."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    waited = False
    while True:
        handle = open(lock, "a")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited:
                    log.info("waiting for another process to finish writing %s", what)
                    waited = True
                fcntl.flock(handle, fcntl.LOCK_EX)
            if _same_file(handle, lock):
                break
        except BaseException:
            handle.close()
            raise
        handle.close()  # the holder before us removed this file: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        handle.close()  # closing lets go of the lock


def _same_file(handle, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def publish_folder(final: Path, write: Callable[[Path], None],
                   complete: Callable[[Path], bool]) -> None:
    """Unless ``final`` is already complete (``complete(final)``), ``write(tmp)``
    fills a hidden temporary folder beside it, which is then renamed to
    ``final`` in one step. One process writes at a time (a lock file beside
    the folder while it writes): the others wait and then find the folder
    complete. A broken folder in the way is replaced; an interrupted write
    leaves only the temporary folder, which is removed."""
    if complete(final):
        return
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
