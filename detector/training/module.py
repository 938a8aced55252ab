"""LightningModule for Faster/Mask R-CNN: SGD with warmup and decay, every
loss logged, COCO evaluation (bbox and segm) in validation and test, gathered
across processes with each image counted once."""

from __future__ import annotations

import logging
import math
import random
import warnings
from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import nn

from ..data.categories import Categories
from ..evaluation import BACKENDS, evaluate_per_class, to_coco_results
from ..weights.fine_tune import with_source_normalisation
from ..modeling.rcnn import GeneralizedRCNN
from ..loading.spec import build_model, without_pretrained_files
from .datamodule import check_masks_for_mask_model
from .divergence import (
    TrainingDiverged,
    describe,
    last_good_checkpoint,
    non_finite_parameters,
    non_finite_terms,
)
from .gathering import gather_results, on_rank_zero
from .untrained import refuse_untrained_frozen

log = logging.getLogger(__name__)


def warmup_then_decay(warmup_steps: int, total_steps: int, decay: str = "cosine",
                      milestones: tuple[float, ...] = (0.67, 0.89), gamma: float = 0.1,
                      warmup_factor: float = 0.001,
                      milestone_steps: tuple[int, ...] | None = None) -> Callable[[int], float]:
    """LR multiplier per step: linear warmup from warmup_factor, then cosine
    decay to 0, or (decay="step") a drop by ``gamma`` at each milestone: at the
    step numbers ``milestone_steps`` when given (Detectron's 60000, 80000),
    else at the fractions ``milestones`` of ``total_steps``."""
    if decay not in ("cosine", "step"):
        raise ValueError(f"decay must be 'cosine' or 'step', got {decay!r}")
    if milestone_steps is not None:
        steps = [int(m) for m in milestone_steps]
        if any(m != float(v) or m < 1 for m, v in zip(steps, milestone_steps)):
            raise ValueError(f"milestone_steps must be positive step numbers, got "
                             f"{list(milestone_steps)}")
    else:
        if not all(0 < float(m) < 1 for m in milestones):
            raise ValueError(f"milestones are fractions of training in (0, 1), got "
                             f"{list(milestones)} (milestone_steps takes step numbers)")
        steps = [math.ceil(float(m) * total_steps) for m in milestones]

    def factor(step: int) -> float:
        if step < warmup_steps:
            alpha = step / max(warmup_steps, 1)
            return warmup_factor * (1 - alpha) + alpha
        if decay == "cosine":
            progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
            return 0.5 * (1 + math.cos(math.pi * progress))
        return gamma ** sum(step >= m for m in steps)

    return factor


def rng_states() -> dict:
    """torch's CPU and CUDA generators and Python's, in a form that
    ``torch.load(weights_only=True)`` reads back."""
    states = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


OPTIMIZERS = ("sgd", "adamw")
ADAMW_LR_LIMIT = 1e-2


class DetectionModule(pl.LightningModule):
    """Trains and evaluates a GeneralizedRCNN.

    Args:
        model: the detector, or its specification (see detector.loading.spec). A
            specification whose ``num_classes`` / ``class_names`` are None gets
            them from the datamodule when training starts (configure_model);
            it is saved in the checkpoints' hyperparameters.
        optimizer: "sgd" (with momentum, the detection standard) or "adamw"
            (momentum is then its beta1); weight decay is not applied to
            BatchNorm parameters and biases.
        lr, momentum, weight_decay: the optimizer's.
        lr_reference_batch: when set, ``lr`` is the rate for this many images
            per optimizer step, and the rate used is scaled linearly to the
            run's images per step (processes × batch size × accumulated
            batches; Goyal et al.'s rule, as Detectron's recipes state it).
        warmup_steps, warmup_factor, decay, milestones, milestone_steps,
            gamma: the schedule (see warmup_then_decay); the total number of
            steps comes from the trainer.
        val_loss: each validation also logs the training losses on the
            validation images (``val/loss``, ``val/loss_*``; see
            GeneralizedRCNN.validation_losses): one more forward pass per
            validation batch, without mask pasting or COCOeval.
        eval_backend: the COCO evaluation's implementation, "faster_coco_eval"
            (default) or "pycocotools" (see detector.evaluation).
        per_class_logging: each validation and test also logs every class's
            AP and AR100 (``val/bbox_AP/NAME``, ...); off by default: a
            scalar per class and metric crowds the logs of many-class data.
    """

    def __init__(self, model: dict | GeneralizedRCNN, optimizer: str = "sgd", lr: float = 0.02,
                 momentum: float = 0.9, weight_decay: float = 1e-4, warmup_steps: int = 100,
                 decay: str = "cosine", warmup_factor: float = 0.001,
                 milestones: tuple[float, ...] = (0.67, 0.89),
                 milestone_steps: tuple[int, ...] | None = None, gamma: float = 0.1,
                 lr_reference_batch: int | None = None, val_loss: bool = True,
                 eval_backend: str = "faster_coco_eval", per_class_logging: bool = False):
        super().__init__()
        if eval_backend not in BACKENDS:
            raise ValueError(f"evaluation backend must be one of {BACKENDS}, "
                             f"got {eval_backend!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if not float(lr) > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        if optimizer == "adamw" and float(lr) > ADAMW_LR_LIMIT:
            warnings.warn(f"optimizer=adamw with lr={lr}: far above the rates at which AdamW "
                          f"trains a detector (1e-4 to 1e-3); lr=0.02 is SGD's rate "
                          "(module.optimizer=sgd)", stacklevel=2)
        if lr_reference_batch is not None and int(lr_reference_batch) < 1:
            raise ValueError(f"lr_reference_batch must be a positive number of images, got "
                             f"{lr_reference_batch!r}")
        warmup_then_decay(warmup_steps, 1, decay, tuple(milestones), gamma, warmup_factor,
                          None if milestone_steps is None else tuple(milestone_steps))  # checks
        if isinstance(model, nn.Module):
            self.model = model
            self.save_hyperparameters(ignore=["model"])
        else:
            self.model = None  # built in configure_model, once the data is known
            self.save_hyperparameters()
        self._results: list[dict] = []
        self._image_ids: list[int] = []
        # set when fit resumes from a checkpoint (rcnn-train, rcnn-lightning fit --ckpt_path)
        self.resuming = False
        self.tested: dict | None = None  # rank 0's last test: evaluation, results, dataset

    def configure_model(self) -> None:
        if self.model is not None:
            return
        spec = dict(self.hparams.model)
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        if (not fitting and spec.get("class_names") and spec.get("category_ids")
                and hasattr(datamodule, "use_categories")):
            # evaluating a trained model: the data's labels are the model's
            datamodule.use_categories(Categories.of_model(
                spec["class_names"], spec["category_ids"], "the model's specification"))
        if hasattr(datamodule, "follow_model"):
            datamodule.follow_model(masks=spec.get("masks", True))
        names = getattr(datamodule, "class_names", None)
        if names is not None:
            if spec.get("num_classes") not in (None, len(names)):
                raise ValueError(f"model num_classes={spec['num_classes']}, but the data has "
                                 f"{len(names) - 1} categories + background; leave it null")
            spec["num_classes"] = len(names)
            spec.setdefault("class_names", None)
            spec["class_names"] = spec["class_names"] or list(names)
            ids = getattr(datamodule, "category_ids", None)
            if ids is not None and spec.get("category_ids") is None:
                spec["category_ids"] = list(ids)
        if fitting and spec.get("masks", True):
            counts = getattr(datamodule, "mask_counts", None)
            if counts is not None:
                check_masks_for_mask_model(counts)
            elif getattr(datamodule, "has_masks", True) is False:
                raise ValueError("the training data has no instance masks (boxes only), but "
                                 "the model has a mask head: train Faster R-CNN "
                                 "(model=faster_rcnn, or model.masks=false)")
        if spec.get("num_classes") is None:
            raise ValueError("the model's num_classes is not set and there is no datamodule "
                             "with class_names to take it from")
        # a resumed run takes every weight from its checkpoint: no pretrained file is read,
        # and what was frozen holds the checkpoint's weights
        resuming = fitting and self.resuming
        if spec.get("init_weights") and not resuming:
            spec = with_source_normalisation(spec)  # init_weights' own, in every stage
        self.hparams.model = spec
        self.model = build_model(without_pretrained_files(spec) if resuming else spec,
                                 trust=True)  # a config the user wrote
        if fitting and not resuming:
            refuse_untrained_frozen(self.model)
            report = getattr(self.model, "init_report", None)
            if report is not None and self._trainer is not None and self.trainer.is_global_zero:
                print(report.table())
                log.info("the initial weights' table: %s",
                         report.write(self.trainer.default_root_dir))

    def forward(self, images):
        return self.model(images)

    def training_step(self, batch, batch_idx):
        images, targets = batch
        losses = self.model(images, targets)
        loss = sum(losses.values())
        self._stop_if_diverged(losses, loss)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=len(images))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        return loss

    def images_per_step(self) -> int:
        """Images per optimizer step: processes × batch size × accumulated batches."""
        trainer = self.trainer
        batch = getattr(trainer.datamodule, "batch_size", None) if trainer.datamodule else None
        if batch is None:
            raise ValueError("lr_reference_batch needs a datamodule with a batch_size")
        return int(trainer.world_size) * int(batch) * int(trainer.accumulate_grad_batches)

    def effective_lr(self) -> float:
        """The learning rate used: ``lr``, scaled linearly to this run's images
        per step when ``lr_reference_batch`` is set."""
        hp = self.hparams
        reference = hp.get("lr_reference_batch")
        if reference is None:
            return float(hp.lr)
        images = self.images_per_step()
        lr = float(hp.lr) * images / int(reference)
        log.info("lr %.4g for %d images per step (lr=%g is for %d)", lr, images, hp.lr, reference)
        return lr

    def configure_optimizers(self):
        hp = self.hparams
        decayed, plain = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (decayed if p.ndim > 1 else plain).append(p)  # biases, norms: ndim 1
        groups = [{"params": decayed, "weight_decay": hp.weight_decay},
                  {"params": plain, "weight_decay": 0.0}]
        lr = self.effective_lr()
        if hp.get("optimizer", "sgd") == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=lr, betas=(hp.momentum, 0.999))
        else:
            optimizer = torch.optim.SGD(groups, lr=lr, momentum=hp.momentum)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        steps = hp.get("milestone_steps")
        schedule = warmup_then_decay(hp.warmup_steps, total, hp.decay,
                                     tuple(hp.get("milestones", (0.67, 0.89))),
                                     hp.get("gamma", 0.1), hp.get("warmup_factor", 0.001),
                                     None if steps is None else tuple(steps))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _stop_if_diverged(self, losses: dict, loss: torch.Tensor) -> None:
        """A non-finite loss on any process stops every process at this step
        (one small reduction per step under DDP)."""
        diverged = not bool(torch.isfinite(loss))
        if self._trainer is not None and self.trainer.world_size > 1:
            diverged = self.trainer.strategy.reduce_boolean_decision(diverged, all=False)
        if not diverged:
            return
        terms = non_finite_terms(losses) or {"loss (on another process)": float("nan")}
        optimizers = self.trainer.optimizers if self._trainer is not None else []
        lr = optimizers[0].param_groups[0]["lr"] if optimizers else None
        checkpoint = last_good_checkpoint(self.trainer) if self._trainer is not None else None
        step = self.trainer.global_step + 1 if self._trainer is not None else 0
        raise TrainingDiverged(describe(step, terms, lr, checkpoint), step, checkpoint)

    # exact resumption ----------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The random generators' states go with the checkpoint: the model's
        sampling (anchors, proposals) draws from them during training. A model
        whose weights are no longer finite is never saved: the error is raised
        before the file is written, so no good checkpoint is replaced."""
        bad = non_finite_parameters(self.model) if self.model is not None else []
        if bad:
            step = self.trainer.global_step if self._trainer is not None else 0
            checkpoint_path = last_good_checkpoint(self.trainer) if self._trainer else None
            raise TrainingDiverged(
                describe(step, {f"weights ({', '.join(bad)})": float("nan")}, None,
                         checkpoint_path), step, checkpoint_path)
        states = rng_states()
        checkpoint["rng_states"] = states  # this process's: rank 0's in the file
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # every process samples from its own generators: each one's goes in
            # (every process takes part in saving a checkpoint)
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, states)
            checkpoint["rng_states_per_rank"] = gathered

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        per_rank = checkpoint.get("rng_states_per_rank")
        distributed = dist.is_available() and dist.is_initialized()
        rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        if per_rank is not None and len(per_rank) == world:
            self._rng_to_restore = per_rank[rank]
            return
        saved_world = len(per_rank) if per_rank is not None else 1
        if saved_world != world:
            log.warning("the checkpoint was written by %d process(es) and is resumed by %d: "
                        "the random generators cannot all be restored, so the run will not "
                        "repeat the uninterrupted one exactly", saved_world, world)
        self._rng_to_restore = checkpoint.get("rng_states")

    def on_train_start(self) -> None:
        # restored here, after everything that runs between loading and the
        # first step (sanity validation, loader set-up) has used the generators
        if getattr(self, "_rng_to_restore", None):
            set_rng_states(self._rng_to_restore)
        self._rng_to_restore = None

    # evaluation -----------------------------------------------------------
    def label_to_category(self) -> dict[int, int]:
        """Label → category id, through the model's own ``category_ids`` (the
        training data's, saved in the checkpoint), whatever the split's json
        lists; a model built without them maps through the split's."""
        ids = getattr(self.model, "category_ids", None)
        if ids is None:
            return self._dataset().label_to_category
        return {label: int(c) for label, c in enumerate(ids, start=1)}

    def _eval_step(self, batch, detections=None):
        images, targets = batch
        if detections is None:
            detections = self.model(images)
        ids = [int(t["image_id"]) for t in targets]
        self._results.extend(to_coco_results(detections, ids, self.label_to_category(),
                                             self.model.mask_threshold))
        self._image_ids.extend(ids)

    def validation_step(self, batch, batch_idx):
        if not self.hparams.get("val_loss", True):
            self._eval_step(batch)
        else:  # the detections and the losses from one pass of the backbone
            images, targets = batch
            detections, losses = self.model.detections_and_validation_losses(
                images, targets, seed=batch_idx)
            self._eval_step(batch, detections)
            # averaged over the validation images (and processes)
            self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=len(images),
                          sync_dist=True)
            self.log("val/loss", sum(losses.values()), batch_size=len(images), sync_dist=True)

    def predict_step(self, batch, batch_idx):
        """COCO results (category ids, RLE masks) of a batch of the test split."""
        images, targets = batch
        ids = [int(t["image_id"]) for t in targets]
        detections = self.model(images)
        return {"results": to_coco_results(detections, ids, self.label_to_category(),
                                           self.model.mask_threshold),
                "image_ids": ids}

    def test_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_validation_epoch_end(self):
        self._log_metrics("val")

    def on_test_epoch_end(self):
        self._log_metrics("test")

    def _dataset(self):
        stage = "test" if self.trainer.testing or self.trainer.predicting else "val"
        return self.trainer.datamodule.dataset(stage)

    def _log_metrics(self, stage: str):
        """COCOeval on the results of every process, run once (rank 0) and its
        numbers shared, so that every process logs the same values."""
        results, image_ids = self._results, self._image_ids
        self._results, self._image_ids = [], []
        if self.trainer.sanity_checking:
            return
        gathered = gather_results(results, image_ids, everywhere=False)
        dataset = self._dataset()
        iou_types = ("bbox", "segm") if self.model.roi_heads.has_masks else ("bbox",)
        extra = getattr(self.trainer.datamodule, "extra_metrics", ())
        backend = self.hparams.get("eval_backend", "faster_coco_eval")

        def compute():
            evaluation = evaluate_per_class(dataset.coco, gathered[0], iou_types, gathered[1],
                                            extra, backend=backend)
            if stage == "test":  # rank 0 keeps what the test's files are made of
                self.tested = {"evaluation": evaluation, "results": gathered[0],
                               "image_ids": gathered[1], "dataset": dataset}
            return evaluation.metrics, evaluation.per_class

        metrics, per_class = on_rank_zero(compute)
        self.metrics = {stage: metrics}
        self.per_class = {stage: per_class}
        flat = {f"{stage}/{t}_{name}": value for t, values in metrics.items()
                for name, value in values.items()}
        if self.hparams.get("per_class_logging", False):
            flat.update({f"{stage}/{t}_{name}/{row['name']}": row[name]
                         for t, rows in per_class.items() for row in rows
                         for name in ("AP", "AR100") if row[name] is not None})
        # identical on every process (rank 0's numbers, shared), so no reduction
        self.log_dict(flat, rank_zero_only=False, sync_dist=False)
