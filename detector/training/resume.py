"""Where a run starts (the ``resume`` setting), so that a sweep can be run again, after a
preemption, a requeue or a Ctrl+C, and lose nothing:

- ``auto`` (the default): a run of a sweep (``rcnn-train -m``) continues the run already in
  its folder (a sweep's folders are named by the study and the run's overrides, so the same
  command finds the same folder): a finished run (results.json) is not run again, an
  unfinished one resumes exactly from ``checkpoints/last.ckpt``, and otherwise it starts. A
  single run (its folder is new each time) starts.
- ``true``: the same for single runs too (e.g. a fixed ``hydra.run.dir`` under a scheduler).
- ``false``: always starts, and refuses a folder that already holds a run rather than
  overwrite its checkpoints.

``ckpt_path=PATH`` on the command line always wins.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)

RESUME_VALUES = ("auto", True, False)


def in_sweep() -> bool:
    """Whether this run is a job of a Hydra sweep (``-m``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@dataclass
class Start:
    ckpt_path: str | None = None  # the checkpoint to resume from (None: from scratch)
    finished: dict | None = None  # the results.json of a run already done (nothing to run)


def plan_start(cfg: DictConfig, output_dir: Path) -> Start:
    """How the run in ``output_dir`` starts, by the rules above."""
    resume = cfg.get("resume", "auto")
    if resume not in RESUME_VALUES or isinstance(resume, int) and not isinstance(resume, bool):
        raise ValueError(f"resume must be auto, true or false, got {resume!r}")
    if cfg.get("ckpt_path") is not None or not cfg.get("train", True):
        return Start(cfg.get("ckpt_path"))
    results = output_dir / "results.json"
    last = output_dir / "checkpoints" / "last.ckpt"
    if resume is True or (resume == "auto" and in_sweep()):
        if results.is_file() and cfg.get("test", True):
            try:
                finished = json.loads(results.read_text())
            except (OSError, json.JSONDecodeError) as error:
                raise ValueError(f"{results}: not a readable results.json ({error}); remove it "
                                 "to run this run again") from None
            log.info("%s is done (results.json): not run again (another folder, e.g. "
                     "hydra.sweep.dir=..., runs it anew)", output_dir)
            return Start(finished.get("checkpoint"), finished)
        if last.is_file():
            log.info("resuming from %s (resume=%s)", last, resume)
            return Start(str(last))
        return Start()
    if resume is False and (results.is_file() or last.is_file()):
        held = results if results.is_file() else last
        raise FileExistsError(
            f"resume=false, but {output_dir} already holds a run ({held}); resume=auto continues "
            "it, or choose another folder (hydra.sweep.dir=... for a sweep, hydra.run.dir=... "
            "for a single run) or remove this one")
    return Start()
