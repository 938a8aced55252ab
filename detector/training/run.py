"""train(cfg): what ``rcnn-train`` does with a composed Hydra config."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from ..visualization.curves import plot_curves
from ..evaluation import format_table
from ..evaluation.detections import write_json
from ..evaluation.outputs import report_text, write_outputs
from ..data.categories import Categories
from .divergence import TrainingDiverged
from .clock import RunClock
from .checkpoint_model import (
    baseline_model,
    check_resumed_model,
    given_paths,
    spec_to_resume,
    model_to_evaluate,
    names_the_model,
)
from .interrupt import EvaluationInterrupted, StopNow, TrainingInterrupted, signals
from .module import DetectionModule
from .own_run import needs_own_run, run_own
from .resume import plan_start

log = logging.getLogger(__name__)


def _instantiate_all(group: DictConfig | None) -> list:
    """Every entry of the group built; an entry that is null, or whose
    factory returns None (a callback switched off), is left out."""
    built = [hydra.utils.instantiate(c) for c in (group or {}).values() if c is not None]
    return [b for b in built if b is not None]


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    """The checkpoint with the best monitored score, else the latest one."""
    callbacks = sorted(trainer.checkpoint_callbacks, key=lambda c: c.monitor is None)
    return next((c.best_model_path for c in callbacks if c.best_model_path), None)


def _model_to_evaluate(cfg: DictConfig, ckpt_path: str) -> tuple[dict, list[dict]]:
    """An evaluation's model: the checkpoint's specification, with what the
    command line changed explicitly (see detector.training.checkpoint_model)."""
    configured = OmegaConf.to_container(cfg.model, resolve=True)
    baseline, given = None, []
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        overrides = list(hydra_cfg.overrides.task)
        if any(names_the_model(o) for o in overrides):
            sources = OmegaConf.to_container(hydra_cfg.runtime.config_sources)
            baseline = baseline_model(hydra_cfg.job.config_name, overrides, sources)
            given = given_paths(cfg.model, overrides)
    return model_to_evaluate(ckpt_path, configured, baseline, given)


def train(cfg: DictConfig) -> dict:
    """Trains (cfg.train) and tests (cfg.test) the configured model; writes
    results.json (final test metrics, the split they were measured on: "test", or
    "val" when the data has no test split, and what identifies the run: its
    command-line overrides, seed and wall time) into cfg.paths.output_dir and
    returns the metrics. A run of a sweep that already ran continues (see
    detector.training.resume)."""
    with signals.watching():
        try:
            _set_threads(cfg.get("threads"))
            output_dir = Path(cfg.paths.output_dir)
            start = plan_start(cfg, output_dir)
            if start.finished is not None:
                return start.finished.get("metrics", {})
            if needs_own_run(cfg):
                return run_own(cfg, output_dir, start.ckpt_path)
            return _run(cfg, start.ckpt_path)
        except TrainingDiverged as error:
            log.error("%s", error)
            raise SystemExit(f"error: {error}") from None
        except TrainingInterrupted as stop:
            log.warning("%s", stop)
            print(f"Interrupted during {stop.phase} after step {stop.step}. Resume with the same "
                  f"overrides and ckpt_path={stop.checkpoint}" + _SWEEP_RESUMES)
            signals.requeue_if_asked()
            raise SystemExit(130) from None
        except EvaluationInterrupted as stop:
            log.warning("%s", stop)
            print(f"Interrupted during the {stop.phase}: its results were not written (the "
                  "checkpoints are complete; rcnn-evaluate ckpt_path=... tests one again)")
            signals.requeue_if_asked()
            raise SystemExit(130) from None
        except (StopNow, KeyboardInterrupt) as stop:
            print(f"{stop or 'interrupted'}. Every file already written is complete (checkpoints "
                  "and results are written whole or not at all); resume from "
                  "checkpoints/last.ckpt when there is one" + _SWEEP_RESUMES)
            signals.requeue_if_asked(getattr(stop, "signum", None))
            raise SystemExit(130) from None
        finally:
            _draw_curves(Path(cfg.paths.output_dir))


_SWEEP_RESUMES = " (in a sweep, the same command resumes it: resume=auto)"


def _set_threads(threads) -> None:
    """torch's CPU threads for this run: ``threads``, else OMP_NUM_THREADS when
    set (joblib's workers, hydra/launcher=local_parallel, get cores / n_jobs),
    else torch's default. Processes the run starts (DDP's) inherit the count."""
    if threads is None:
        given = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(given) if given.isdigit() and int(given) > 0 else None
    elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer (or null), got {threads!r}")
    if threads is not None:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    log.info("CPU threads: %d", torch.get_num_threads())


def _draw_curves(output_dir: Path) -> None:
    """curves.png from the run's logs, however the run ended (a figure that
    cannot be drawn is a warning, never the run's error)."""
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) != 0:
        return
    try:
        path = plot_curves(output_dir)
    except (FileNotFoundError, ValueError) as error:
        log.info("no learning curves: %s", error)
    except Exception as error:  # noqa: BLE001 - a picture must not fail the run
        log.warning("could not draw the learning curves: %s", error)
    else:
        log.info("learning curves: %s", path)


def monitored_metric(monitor: str | None, spec: dict, val_masks=None) -> str | None:
    """The metric that picks the best checkpoint: ``monitor`` as set, or for
    "auto" the model's own, val/segm_AP with a mask head, val/bbox_AP without
    (a metric that is never logged would stop Lightning), and val/bbox_AP when
    the validation split (``val_masks``: its MaskCounts) has no mask at all:
    its segm AP would be the same whatever the model."""
    if monitor != "auto":
        return monitor
    if not spec.get("masks", True):
        return "val/bbox_AP"
    if val_masks is not None and val_masks.instances and not val_masks.with_masks:
        log.warning("%s has no instance masks: the best checkpoint is chosen on val/bbox_AP "
                    "(its segm AP cannot tell models apart)", val_masks.source)
        return "val/bbox_AP"
    return "val/segm_AP"


def _resolve_monitor(cfg: DictConfig, spec: dict, datamodule) -> None:
    """Sets ``cfg.monitor`` (which the checkpoint callback reads) to the metric."""
    val_masks = None
    if cfg.get("monitor") == "auto" and cfg.get("train", True) and spec.get("masks", True):
        val_masks = getattr(datamodule.dataset("val"), "mask_counts", None)
    with open_dict(cfg):
        cfg.monitor = monitored_metric(cfg.get("monitor"), spec, val_masks)


def _wall_time(clock: RunClock | None, started: float) -> float | None:
    """The run's wall time: a resumed run's summed over the processes that ran
    it (None if its checkpoint was written without a count)."""
    seconds = clock.seconds() if clock else time.perf_counter() - started
    return None if seconds is None else round(seconds, 1)


def _choices() -> dict:
    """The option of every config group (data, augment, roi_op, ...), defaults
    included, as Hydra composed them; {} outside Hydra."""
    if not HydraConfig.initialized():
        return {}
    return {group: option for group, option in HydraConfig.get().runtime.choices.items()
            if not group.startswith("hydra/")}


def _run(cfg: DictConfig, ckpt_path: str | None) -> dict:
    started = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    training, model_changes = cfg.get("train", True), None
    if training:
        spec = OmegaConf.to_container(cfg.model, resolve=True)
        if ckpt_path is not None:
            check_resumed_model(ckpt_path, spec)
            spec = spec_to_resume(ckpt_path, spec)
    elif ckpt_path is None:
        raise ValueError("train=false needs ckpt_path=PATH (the checkpoint to evaluate)")
    else:  # the checkpoint's model and classes: the training data is not read
        spec, model_changes = _model_to_evaluate(cfg, ckpt_path)
        source = f"the checkpoint {ckpt_path}"
        if spec.get("category_ids") is None:  # written before the ids were kept
            categories = datamodule.categories_by_name(spec["class_names"][1:], source)
            spec["category_ids"] = list(categories.ids)
        else:
            categories = Categories.of_model(spec["class_names"], spec["category_ids"], source)
        datamodule.use_categories(categories)
        if "masks" in cfg.data and OmegaConf.is_interpolation(cfg.data, "masks"):
            datamodule.masks = spec.get("masks", True)  # data=voc reads what the model uses
    evaluation = cfg.get("evaluation") or {}
    module = DetectionModule(spec, **OmegaConf.to_container(cfg.module, resolve=True),
                             eval_backend=evaluation.get("backend", "faster_coco_eval"),
                             per_class_logging=bool(evaluation.get("per_class_logging", False)))
    _resolve_monitor(cfg, spec, datamodule)
    clock = RunClock(started) if training else None
    callbacks = _instantiate_all(cfg.get("callbacks")) + ([clock] if clock else [])
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks,
        logger=_instantiate_all(cfg.get("logger")) or False)
    if training:
        module.resuming = ckpt_path is not None
        trainer.fit(module, datamodule, ckpt_path=ckpt_path)
        ckpt_path = _best_checkpoint(trainer)
    metrics = {}
    if cfg.get("test", True):
        trainer.test(module, datamodule, ckpt_path=ckpt_path)
        metrics = module.metrics["test"]
        split = getattr(datamodule, "test_split", "test")
        sections = {}
        if trainer.is_global_zero:
            sections = test_outputs(output_dir, split, module.tested)
            write_json(output_dir / "results.json", {
                "metrics": metrics, **sections, "split": split,
                "checkpoint": str(ckpt_path) if ckpt_path else None,
                "model": module.hparams["model"],  # the specification tested
                **({"model_changes": model_changes} if model_changes is not None else {}),
                "overrides": overrides, "choices": _choices(), "seed": cfg.seed,
                **({"augment": datamodule.augmentation} if training else {}),
                "threads": torch.get_num_threads(),
                "wall_time_s": _wall_time(clock, started),
                **({"resumed_at_step": clock.resumed_at_step}
                   if clock and clock.resumed_at_step is not None else {})})
        if split != "test":
            print(f"Test metrics on the {split} split (the data has no test split" + (
                "; the best checkpoint was chosen on this split too):" if training else "):"))
        print(format_table(metrics))
        if sections:
            print("\n" + report_text(sections))
    return metrics


def test_outputs(output_dir: Path, split: str, tested: dict | None) -> dict:
    """The test's files (detections, confusion matrix, error breakdown,
    figures: detector.evaluation.outputs) and results.json's sections for them."""
    if tested is None:
        return {}
    dataset = tested["dataset"]
    return write_outputs(output_dir, split, dataset.coco, tested["evaluation"],
                         tested["results"], tested["image_ids"],
                         getattr(dataset, "read_image", None))
