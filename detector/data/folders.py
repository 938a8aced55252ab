"""Writing a dataset folder so that no reader ever sees half of it."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def publish_folder(final: Path, write: Callable[[Path], None],
                   complete: Callable[[Path], bool]) -> None:
    """``write(tmp)`` fills a hidden temporary folder beside ``final``, which
    is then renamed to ``final`` in one step. When another process finished
    first, its folder is kept; a broken folder in the way (``complete`` says
    no) is replaced. An interrupted write leaves only the temporary folder,
    which is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
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
