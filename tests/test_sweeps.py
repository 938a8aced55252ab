"""Studies at any scale (issue 18): a sweep's runs in folders named by their overrides,
resumed or skipped when the sweep runs again; local parallel sweeps (joblib) whose runs
write the shared data once; submitit jobs that, signalled before their time limit, save,
are requeued and resume exactly; and sweeps of 2-process DDP runs. The end-to-end sweeps
start real processes (-m slow; CI runs them)."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from detector.cli import RUN_DIRNAME_MAX, run_dirname
from detector.data.publishing import publish_folder
from detector.training import own_run, resume
from detector.training.interrupt import requeue_signal
from detector.training.own_run import needs_own_run
from detector.training.resume import plan_start

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# the folder of a run -----------------------------------------------------------------------
def test_run_dirname_is_one_valid_name_per_set_of_overrides():
    assert run_dirname("roi_op=pool,seed=0") == "roi_op=pool,seed=0"
    assert "/" not in run_dirname("data.root=/data/mine,seed=1")
    assert run_dirname("") == "run"
    long = ",".join(f"setting_{i}=value_{i}" for i in range(30))
    names = {run_dirname(long + ",seed=0"), run_dirname(long + ",seed=1")}
    assert len(names) == 2 and all(len(n) <= RUN_DIRNAME_MAX for n in names)


def test_study_folders_are_named_by_study_and_overrides_not_time():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=roi_ops_c5"], return_hydra_config=True)
    sweep = OmegaConf.to_container(cfg.hydra.sweep)
    assert sweep["dir"] == "${paths.log_dir}/ablation/roi_ops_c5"
    assert sweep["subdir"] == "${run_dirname:${hydra.job.override_dirname}}"
    excluded = cfg.hydra.job.config.override_dirname.exclude_keys
    assert {"experiment", "resume", "threads"} <= set(excluded) and "seed" not in excluded


# where a run starts ------------------------------------------------------------------------
def _cfg(**settings):
    return OmegaConf.create({"resume": "auto", "ckpt_path": None, "train": True, "test": True,
                             **settings})


def _held_run(folder: Path, results: bool) -> Path:
    (folder / "checkpoints").mkdir(parents=True)
    last = folder / "checkpoints" / "last.ckpt"
    last.write_bytes(b"checkpoint")
    if results:
        (folder / "results.json").write_text(json.dumps({"metrics": {"bbox": {"AP": 0.5}},
                                                         "checkpoint": "best.ckpt"}))
    return last


@pytest.mark.parametrize("sweep", [True, False])
def test_resume_auto_continues_a_sweeps_runs_only(tmp_path, monkeypatch, sweep):
    monkeypatch.setattr(resume, "in_sweep", lambda: sweep)
    assert plan_start(_cfg(), tmp_path) == resume.Start()  # nothing there: starts
    last = _held_run(tmp_path / "started", results=False)
    assert plan_start(_cfg(), tmp_path / "started").ckpt_path == (str(last) if sweep else None)
    _held_run(tmp_path / "done", results=True)
    finished = plan_start(_cfg(), tmp_path / "done").finished
    assert finished == ({"metrics": {"bbox": {"AP": 0.5}}, "checkpoint": "best.ckpt"}
                        if sweep else None)


def test_resume_true_false_and_explicit_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setattr(resume, "in_sweep", lambda: False)
    last = _held_run(tmp_path, results=False)
    assert plan_start(_cfg(resume=True), tmp_path).ckpt_path == str(last)
    assert plan_start(_cfg(resume=True, ckpt_path="mine.ckpt"), tmp_path).ckpt_path == "mine.ckpt"
    with pytest.raises(FileExistsError, match=f"resume=false.*{tmp_path}"):
        plan_start(_cfg(resume=False), tmp_path)
    assert plan_start(_cfg(resume=False), tmp_path / "new") == resume.Start()
    for bad in ("sometimes", 1):
        with pytest.raises(ValueError, match="resume must be auto, true or false"):
            plan_start(_cfg(resume=bad), tmp_path)


# DDP in a sweep ----------------------------------------------------------------------------
@pytest.mark.parametrize("trainer, environment, expected", [
    ({"strategy": "ddp", "devices": 2}, {}, True),
    ({"strategy": "ddp", "devices": 1}, {}, False),
    ({"strategy": "ddp", "devices": 1, "num_nodes": 2}, {}, True),
    ({"strategy": "ddp_spawn", "devices": 2}, {}, False),
    ({"strategy": "auto", "devices": 1}, {}, False),
    ({"strategy": "ddp", "devices": 2}, {"LOCAL_RANK": "0"}, False),  # torchrun's processes
    ({"strategy": "ddp", "devices": 2}, {"SLURM_NTASKS": "2"}, False),  # srun's tasks
])
def test_which_sweep_jobs_start_their_processes_as_a_run_of_their_own(
        monkeypatch, trainer, environment, expected):
    monkeypatch.setattr(own_run, "in_sweep", lambda: True)
    for key in ("LOCAL_RANK", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    assert needs_own_run(_cfg(trainer=trainer, sweep_ddp="own_run")) is expected
    assert needs_own_run(_cfg(trainer=trainer, sweep_ddp="lightning")) is False
    with pytest.raises(ValueError, match="sweep_ddp must be one of"):
        needs_own_run(_cfg(trainer=trainer, sweep_ddp="srun"))


# the launchers' configs --------------------------------------------------------------------
def test_launcher_configs():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        slurm = compose("train", overrides=["hydra/launcher=slurm",
                                             "hydra.launcher.gpus_per_node=4"],
                        return_hydra_config=True).hydra.launcher
        local = compose("train", overrides=["hydra/launcher=local_parallel"],
                        return_hydra_config=True).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher")
    with pytest.raises(Exception, match="hydra.launcher.partition must be set"):
        slurm.partition  # no guess at a cluster's partition
    assert slurm.tasks_per_node == slurm.gpus_per_node == 4  # one task per GPU
    assert slurm.timeout_min > 0 and slurm.signal_delay_s > 0 and slurm.max_num_timeout > 0
    assert local._target_.endswith("JoblibLauncher") and local.n_jobs == 2


def test_slurm_without_a_partition_is_refused_by_name(tmp_path):
    done = subprocess.run([str(Path(sys.executable).parent / "rcnn-train"), "-m",
                           "hydra/launcher=slurm", "seed=0", f"hydra.sweep.dir={tmp_path}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "hydra/launcher=slurm needs hydra.launcher.partition=NAME" in done.stderr


def test_a_partition_set_in_a_config_is_not_refused(tmp_path):
    """The launcher's required settings are checked on the composed config, so a
    partition given by the user's own experiment passes, and only a missing one
    ends the command."""
    from detector.cli.train import RequiredSettings

    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text(
        "# @package _global_\nhydra:\n  launcher:\n    partition: gpu\n")
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        given = compose("train", overrides=["hydra/launcher=slurm", "experiment=mine",
                                            f"hydra.searchpath=[file://{tmp_path}]"],
                        return_hydra_config=True)
        missing = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    RequiredSettings().on_multirun_start(given)
    with pytest.raises(SystemExit, match="hydra/launcher=slurm needs hydra.launcher.partition"):
        RequiredSettings().on_multirun_start(missing)


# the data, written once --------------------------------------------------------------------
def _publish(final: str, log: str, ready) -> None:
    def write(tmp: Path) -> None:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # long enough for the others to arrive while it writes
        (tmp / "images").mkdir(parents=True)
        (tmp / "annotations.json").write_text("{}")

    ready.wait()
    publish_folder(Path(final), write, lambda f: (f / "annotations.json").is_file())
    assert (Path(final) / "annotations.json").read_text() == "{}"


@pytest.mark.skipif(os.name != "posix", reason="the lock is POSIX flock")
def test_a_dataset_folder_asked_for_at_once_is_written_once(tmp_path):
    context = multiprocessing.get_context("fork")
    ready = context.Barrier(3)
    final, log = tmp_path / "data" / "split", tmp_path / "writers.txt"
    processes = [context.Process(target=_publish, args=(str(final), str(log), ready))
                 for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert len(log.read_text().split()) == 1  # one wrote; the others waited and reused it
    assert [p.name for p in final.parent.iterdir()] == ["split"]  # no lock file left


# end to end: real sweeps -------------------------------------------------------------------
TINY = """# @package _global_
data: {num_train: 8, num_val: 2, num_test: 0, image_size: [96, 128], batch_size: 2}
model: {transform: {min_size: 96, max_size: 128}}
trainer: {max_epochs: 2, check_val_every_n_epoch: 1}
module: {warmup_steps: 1}
callbacks: {progress: null, pictures: null}
"""


class RequeueSignalAt(pl.Callback):
    """Sends the process submitit's requeue signal (as SLURM does before the
    time limit) while training step ``step`` runs (steps count from 1); the
    requeued run resumes after that step, so the signal comes once."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == self.step - 1:
            signal.raise_signal(requeue_signal())


def _rcnn_train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    configs = tmp_path / "configs" / "experiment"
    configs.mkdir(parents=True, exist_ok=True)
    (configs / "tiny_sweep.yaml").write_text(TINY)
    flags = [o for o in overrides if o.startswith("-")]  # argparse: flags before overrides
    command = [str(Path(sys.executable).parent / "rcnn-train"), *flags, "--config-dir",
               str(tmp_path / "configs"), "experiment=tiny_sweep",
               f"paths.data_dir={tmp_path / 'data'}",
               *(o for o in overrides if not o.startswith("-"))]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}  # callbacks from tests/
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def _weights(folder: Path) -> dict:
    return torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_local_parallel_sweep_writes_data_once_and_skips_finished_runs(tmp_path):
    """hydra/launcher=local_parallel: two runs at once, in folders named by
    their seed, each on cores / 2 threads, sharing one copy of the data;
    the same command again runs nothing."""
    import joblib

    sweep = tmp_path / "sweep"
    _rcnn_train(tmp_path, "-m", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2",
                "seed=0,1", f"hydra.sweep.dir={sweep}")
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert runs == ["seed=0", "seed=1"]
    for run in runs:
        assert _results(sweep / run)["threads"] == max(joblib.cpu_count() // 2, 1)
    data = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert [name.split("-")[1] for name in data] == ["train", "val"]  # one copy of each, no lock
    written = {run: (sweep / run / "results.json").stat().st_mtime_ns for run in runs}
    _rcnn_train(tmp_path, "-m", "seed=0,1", f"hydra.sweep.dir={sweep}")
    assert {run: (sweep / run / "results.json").stat().st_mtime_ns for run in runs} == written
    for run in runs:
        assert "is done (results.json): not run again" in (sweep / run / "train.log").read_text()


@pytest.mark.slow
def test_submitit_job_signalled_mid_training_is_requeued_and_resumes_exactly(tmp_path):
    """hydra/launcher=submitit_local, 2 jobs: each gets submitit's requeue
    signal during step 3 of 8, saves last.ckpt, is requeued and resumes; both
    finish (results.json), and job seed=0 ends with the weights of the same run
    left alone."""
    sweep = tmp_path / "sweep"
    stop = ["+callbacks.stop._target_=test_sweeps.RequeueSignalAt", "+callbacks.stop.step=3"]
    _rcnn_train(tmp_path, "-m", "hydra/launcher=submitit_local", "threads=1", "seed=0,1",
                *stop, f"hydra.sweep.dir={sweep}", "hydra.launcher.timeout_min=15")
    jobs = {int(p.name.split("seed=")[1]): p for p in sweep.iterdir() if "seed=" in p.name}
    assert sorted(jobs) == [0, 1]
    for job in jobs.values():
        assert _results(job)["metrics"]["bbox"]["AP"] >= 0
        log = (job / "train.log").read_text()
        assert "training interrupted after step 3" in log
        assert "Requeued job" in log and "resuming from" in log
    _rcnn_train(tmp_path, "threads=1", "seed=0", f"hydra.run.dir={tmp_path / 'straight'}",
                "test=false")
    straight, requeued = _weights(tmp_path / "straight"), _weights(jobs[0])
    assert straight.keys() == requeued.keys()
    for name, value in straight.items():
        assert torch.equal(value, requeued[name]), name


@pytest.mark.slow
def test_a_sweep_of_two_process_ddp_runs(tmp_path):
    """trainer=ddp (2 gloo processes) in a 2-job sweep: each job runs as a
    single run of its own in its folder; no extra folders, no sweep started
    again; results.json keeps the job's overrides."""
    sweep = tmp_path / "sweep"
    _rcnn_train(tmp_path, "-m", "seed=0,1", "trainer=ddp", "trainer.accelerator=cpu",
                "trainer.devices=2", "data.num_train=4", "data.batch_size=1",
                "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}")
    entries = sorted(p.name for p in sweep.iterdir())
    jobs = [name for name in entries if name != "multirun.yaml"]
    assert len(jobs) == 2 and all("seed=" in job for job in jobs), entries
    for job in jobs:
        folder = sweep / job
        assert (folder / "train_ddp_process_1.log").is_file()  # its second process ran
        results = _results(folder)
        assert f"seed={results['seed']}" in results["overrides"]
        assert "trainer=ddp" in results["overrides"]
