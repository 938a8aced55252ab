"""A sweep's job on several processes (``trainer=ddp`` in ``rcnn-train -m``) runs as a single
run of its own.

Lightning starts DDP's other processes by running the command line again. In a Hydra sweep
that command line is the whole sweep, which would then start over in every process, with
extra output folders (Lightning issues #11300 and #15689); under a launcher that runs jobs in
worker processes (joblib, submitit) it is not even this job's command. So such a job writes
its composed config into its folder and starts the single run it describes,

    python -m detector.cli.train -cp FOLDER/.hydra -cn own_run hydra.run.dir=FOLDER ...

whose processes Lightning starts as for any single run. The job waits for it, passes signals
on (a requeue signal as SIGTERM: the run saves last.ckpt and stops, then the job asks to be
requeued) and writes its results.json with the job's own overrides, so the study's report
reads it like any other run's. ``sweep_ddp=lightning`` leaves it to Lightning instead.

Processes started by someone else (srun with one task per GPU, torchrun: LOCAL_RANK or
SLURM_NTASKS > 1 set) are not started again: the job runs in place.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .interrupt import StopNow, requeue_signal
from .resume import in_sweep

log = logging.getLogger(__name__)

SWEEP_DDP_VALUES = ("own_run", "lightning")
_IN_PLACE_STRATEGIES = ("ddp_spawn", "ddp_fork", "ddp_notebook")


def _is_ddp(strategy) -> bool:
    if isinstance(strategy, DictConfig):
        return str(strategy.get("_target_", "")).endswith("DDPStrategy")
    strategy = str(strategy)
    return strategy.startswith("ddp") and not strategy.startswith(_IN_PLACE_STRATEGIES)


def _several(devices) -> bool:
    if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        return len(devices) > 1
    return str(devices) != "1"


def needs_own_run(cfg: DictConfig) -> bool:
    """Whether this job must start its DDP processes as a run of its own."""
    mode = cfg.get("sweep_ddp", "own_run")
    if mode not in SWEEP_DDP_VALUES:
        raise ValueError(f"sweep_ddp must be one of {SWEEP_DDP_VALUES}, got {mode!r}")
    if mode != "own_run" or not in_sweep() or "LOCAL_RANK" in os.environ:
        return False
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:  # srun started one task per device
        return False
    trainer = cfg.get("trainer") or {}
    return (_is_ddp(trainer.get("strategy", "auto")) and
            (_several(trainer.get("devices", "auto")) or int(trainer.get("num_nodes", 1)) > 1))


def _override(key: str, value) -> str:
    if value is None:
        return f"{key}=null"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"{key}='{text}'"  # quoted: a sweep folder's name holds '=' and ','


def run_own(cfg: DictConfig, output_dir: Path, ckpt_path: str | None) -> dict:
    """Runs the job's config as a single run in ``output_dir``; returns its test metrics."""
    output_dir = output_dir.resolve()
    config_dir = output_dir / ".hydra"
    config_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, config_dir / "own_run.yaml")
    command = [sys.executable, "-m", "detector.cli.train", "-cp", str(config_dir),
               "-cn", "own_run", _override("hydra.run.dir", output_dir),
               "hydra.output_subdir=null", "hydra.job.name=train", "resume=auto",
               _override("ckpt_path", ckpt_path)]
    log.info("a sweep job on several processes: starting it as a run of its own: %s",
             " ".join(command))
    # a session of its own: a Ctrl+C at the terminal reaches it once, from here
    process = subprocess.Popen(command, start_new_session=True)
    try:
        returncode = process.wait()
    except StopNow as stop:
        forwarded = signal.SIGTERM if stop.signum == requeue_signal() else stop.signum
        process.send_signal(forwarded)
        try:
            process.wait()
        except StopNow:
            process.kill()
            process.wait()
        raise
    except BaseException:
        process.kill()
        process.wait()
        raise
    if returncode == 130:  # the run stopped on a signal that reached it alone
        print(f"The run in {output_dir} was interrupted; the same command resumes it")
        raise SystemExit(130)
    if returncode != 0:
        raise RuntimeError(f"the run in {output_dir} failed (exit code {returncode}); its log: "
                           f"{output_dir / 'train.log'}")
    results = output_dir / "results.json"
    if not cfg.get("test", True) or not results.is_file():
        return {}
    data = json.loads(results.read_text())
    data["overrides"] = list(HydraConfig.get().overrides.task)  # the job's, as in any sweep
    partial = results.with_name("results.json.partial")
    partial.write_text(json.dumps(data, indent=2))
    os.replace(partial, results)
    return data["metrics"]
