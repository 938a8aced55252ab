"""LightningDataModules over instance datasets: COCO json (the synthetic one
included) and Pascal VOC folders."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch.utils.data import DataLoader

from ..data.augment import describe
from ..data.coco import CocoInstances, collate, detection_transforms
from ..data.categories import Categories
from ..data.instances import MaskCounts
from ..data.builders.synthetic import make_synthetic_coco
from ..data.voc import VocInstances
from .grouping import GroupedBatchSampler, orientation_groups
from .repeat_factor import RepeatFactorSampler, repeat_factors
from .sampling import EpochSampler

# Lightning's warning on resuming inside an epoch (not true of DetectionDataModule)
MID_EPOCH_WARNING = "You're resuming from a checkpoint that ended before the epoch ended"
SAMPLERS = ("random", "repeat_factor")


class DetectionDataModule(pl.LightningDataModule):
    """Train / val / test splits of an instance dataset (subclasses say how a
    split's dataset is read: COCO json, Pascal VOC folders).

    Args:
        splits: {"train": ..., "val": ..., "test": ...}, each None when not
            given (an error names it when a stage needs it); without a test
            split the test runs on the validation split, and says so
            (``test_split`` is then "val").
        batch_size, num_workers: loader settings (evaluation uses batch_size too).
        shuffle_seed: the training order and augmentations (see EpochSampler).
        flip_probability: the training images' horizontal flip.
        augment: the training augmentation (detector.data.augment.Augment, a
            preset of configs/augment/); None: the flip alone. Evaluation never
            augments.
        drop_empty_images: leave out the training images with no instance
            (by default they train as background images, negatives only).
        group_by_aspect_ratio: batches of portrait or of landscape images only
            (GroupedBatchSampler), which pad less.
        sampler: "random" (every image once per epoch) or "repeat_factor"
            (LVIS's repeat-factor sampling, RepeatFactorSampler, with
            ``repeat_threshold``).

    Images keep their size in the data pipeline: the model resizes them and
    maps its detections back to them, so evaluation compares in the
    annotations' own frame (docs/geometry.md).

    The loaders shard the data across processes themselves (EpochSampler), so
    a distributed Trainer needs ``use_distributed_sampler=False`` (as in
    configs/trainer/). The datamodule's checkpointed state is how far into
    the epoch training got, so a run resumed from a mid-epoch checkpoint reads
    the rest of that epoch's images, in the same order.
    """

    def __init__(self, splits: dict, batch_size: int = 2, num_workers: int = 0,
                 shuffle_seed: int = 0, flip_probability: float = 0.5,
                 augment: Callable | None = None, drop_empty_images: bool = False,
                 group_by_aspect_ratio: bool = False, sampler: str = "random",
                 repeat_threshold: float = 0.001):
        super().__init__()
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if sampler not in SAMPLERS:
            raise ValueError(f"data.sampler must be one of {', '.join(SAMPLERS)}, got "
                             f"{sampler!r}")
        if sampler == "repeat_factor":
            repeat_factors([set()], repeat_threshold)  # checks the threshold
        self.augment, self.drop_empty_images = augment, bool(drop_empty_images)
        self.group_by_aspect_ratio = bool(group_by_aspect_ratio)
        self.sampler, self.repeat_threshold = sampler, repeat_threshold
        self.test_split = "test" if splits.get("test") else "val"
        self.splits = {"train": splits.get("train"), "val": splits.get("val"),
                       "test": splits.get("test") or splits.get("val")}
        self.batch_size, self.num_workers = int(batch_size), num_workers
        self.shuffle_seed = int(shuffle_seed)
        self.flip_probability = float(flip_probability)
        detection_transforms(True, self.flip_probability, augment)  # checks them
        self._datasets: dict = {}
        self._categories: Categories | None = None
        self._train_sampler: EpochSampler | None = None
        self._resume_at: tuple[int, int] | None = None  # (epoch, items) from a checkpoint

    # what evaluation adds to COCO's metrics (detector.evaluation.EXTRA_METRICS)
    extra_metrics: tuple[str, ...] = ()

    # how a split is set on the command line, for the error when it is missing
    split_settings: str = "data.SPLIT=..."

    def _read(self, split, transforms, categories: Categories | None):
        raise NotImplementedError

    @property
    def has_masks(self) -> bool:
        """Whether the training data has instance masks (boxes-only data trains
        Faster R-CNN)."""
        return bool(getattr(self.dataset("train"), "has_masks", True))

    def use_categories(self, categories: Categories) -> None:
        """Every split's labels follow ``categories`` (a checkpoint's, when one
        is evaluated: the training split is then never read)."""
        current = self._categories
        if current is not None and (current.ids, current.names) == (categories.ids,
                                                                    categories.names):
            return
        self._categories = categories
        self._datasets.clear()

    def categories_by_name(self, class_names: list[str], source: str) -> Categories:
        """The categories of a model that names its classes but not their ids
        (checkpoints written before the ids were kept): the ids of those names
        in the split that is tested, with a warning; a name the split does not
        list is an error."""
        if self.splits["test"] is None:
            self.dataset("test")  # the error naming the missing split
        own = self._read(self.splits["test"], None, None)
        by_name = dict(zip(own.categories.names, own.categories.ids))
        missing = [n for n in class_names if n not in by_name]
        if missing:
            raise ValueError(f"{source} names its classes but not their category ids, and "
                             f"{own.categories.source} lists no category named "
                             f"{', '.join(map(repr, missing))}")
        warnings.warn(f"{source} does not keep its category ids: they are taken from "
                      f"{own.categories.source} by class name", stacklevel=2)
        return Categories(tuple(by_name[n] for n in class_names), tuple(class_names), source)

    @property
    def categories(self) -> Categories:
        """The model's categories: those given (use_categories), else the
        training split's. Every split maps its annotations to labels with them."""
        if self._categories is None:
            self._categories = self.dataset("train").categories
        return self._categories

    @property
    def mask_counts(self) -> MaskCounts | None:
        """How many training instances have a mask, of how many, in which file."""
        return getattr(self.dataset("train"), "mask_counts", None)

    def dataset(self, stage: str):
        if stage not in self._datasets:
            split = self.splits[stage]
            if split is None:
                name = "val" if stage == "test" else stage
                needed = {"train": "training needs", "val": "validation needs",
                          "test": "testing needs data.test or"}[stage]
                raise ValueError(f"{needed} data.{name}, which is not set: "
                                 f"{self.split_settings.replace('SPLIT', name)}")
            transforms = detection_transforms(stage == "train", self.flip_probability,
                                              self.augment)
            categories = self._categories if stage == "train" else self.categories
            dataset = self._read(split, transforms, categories)
            if stage == "train" and self.drop_empty_images:
                dataset.drop_empty_images()
            if stage == "train" and not len(dataset):
                raise ValueError("data.drop_empty_images=true left no training image: none "
                                 "has an instance to train on")
            self._datasets[stage] = dataset
        return self._datasets[stage]

    @property
    def class_names(self) -> list[str]:
        return ["__background__", *self.categories.names]

    @property
    def category_ids(self) -> list[int]:
        """The category id of each label 1..K (COCO ids may have gaps)."""
        return list(self.categories.ids)

    def _loader(self, stage: str, sampler: EpochSampler,
                batches: GroupedBatchSampler | None = None) -> DataLoader:
        if (self.trainer is not None and self.trainer.world_size > 1
                and self.trainer._accelerator_connector.use_distributed_sampler):
            raise ValueError("CocoDataModule shards the data across processes itself; "
                             "create the Trainer with use_distributed_sampler=False")
        # the loader's own generator, so that creating its iterator leaves the
        # global one (which the model's sampling uses) untouched
        batching = ({"batch_sampler": batches} if batches is not None else
                    {"batch_size": self.batch_size, "sampler": sampler})
        return DataLoader(self.dataset(stage), **batching,
                          num_workers=self.num_workers, collate_fn=collate,
                          persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.shuffle_seed))

    def train_sampler(self) -> EpochSampler:
        if self._train_sampler is None:
            dataset = self.dataset("train")
            if self.sampler == "repeat_factor":
                factors = repeat_factors(dataset.image_labels(), self.repeat_threshold)
                self._train_sampler = RepeatFactorSampler(factors, self.shuffle_seed)
            else:
                self._train_sampler = EpochSampler(len(dataset), True, self.shuffle_seed)
            if self._resume_at is not None:
                self._train_sampler.resume(*self._resume_at)
        return self._train_sampler

    def train_dataloader(self):
        sampler = self.train_sampler()
        batches = None
        if self.group_by_aspect_ratio:
            groups = orientation_groups(self.dataset("train").aspect_ratios())
            batches = GroupedBatchSampler(sampler, groups, self.batch_size)
        return self._loader("train", sampler, batches)

    def val_dataloader(self):
        return self._loader("val", EpochSampler(len(self.dataset("val")), False))

    def test_dataloader(self):
        return self._loader("test", EpochSampler(len(self.dataset("test")), False))

    def predict_dataloader(self):
        return self.test_dataloader()

    # resuming ---------------------------------------------------------------
    @property
    def augmentation(self) -> str:
        """The training augmentation, every step with its settings, on one line."""
        return describe(detection_transforms(True, self.flip_probability, self.augment))

    def state_dict(self) -> dict:
        """Saved in checkpoints: the epoch, how many of its batches were trained,
        and the augmentation they were trained with."""
        if self.trainer is None:
            return {}
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": self.trainer.current_epoch, "batches": done,
                "augment": self.augmentation}

    def load_state_dict(self, state: dict) -> None:
        """Where training resumes, applied when training reads its split:
        evaluating a checkpoint (which restores this too) never reads it.
        Resuming training with another augmentation than the checkpoint's is
        refused (a default that changed between the two, say): the run would
        not be the one that was interrupted."""
        fitting = self.trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        if fitting and state.get("augment") not in (None, self.augmentation):
            raise ValueError(
                f"ckpt_path={self.trainer.ckpt_path} is resumed with another augmentation "
                f"(in the checkpoint: {state['augment']}; now: {self.augmentation}): give the "
                f"overrides the run was started with (augment=..., data.flip_probability=...)")
        if state:
            # Lightning warns of a mid-epoch resume when the loader itself keeps
            # no state; this datamodule's sampler resumes it exactly instead.
            warnings.filterwarnings("ignore", message=MID_EPOCH_WARNING)
            self._resume_at = (state["epoch"], state["batches"] * self.batch_size)
            if self._train_sampler is not None:
                self._train_sampler.resume(*self._resume_at)


class CocoDataModule(DetectionDataModule):
    """Splits in COCO format: ``train``, ``val`` and ``test``, each a dict with
    ``images`` (a folder) and ``annotations`` (a COCO json), or None (or both
    null) when not given: training needs train and val; testing needs test or
    val (evaluating a checkpoint needs nothing else). The other arguments are
    DetectionDataModule's (``options``: augment, drop_empty_images,
    group_by_aspect_ratio, sampler, repeat_threshold)."""

    split_settings = "data.SPLIT.images=DIR data.SPLIT.annotations=FILE"

    def __init__(self, train: dict | None = None, val: dict | None = None,
                 test: dict | None = None, batch_size: int = 2, num_workers: int = 0,
                 shuffle_seed: int = 0, flip_probability: float = 0.5, **options):
        splits = {}
        for stage, split in {"train": train, "val": val, "test": test}.items():
            given = {k: v for k, v in dict(split or {}).items() if v is not None}
            if not given:
                splits[stage] = None
                continue
            missing = sorted({"images", "annotations"} - set(given))
            if missing:
                raise ValueError(f"data.{stage} needs {' and '.join(missing)} too "
                                 f"(data.{stage}.{missing[0]}=...)")
            splits[stage] = given
        super().__init__(splits, batch_size, num_workers, shuffle_seed, flip_probability,
                         **options)

    def _read(self, split, transforms, categories):
        return CocoInstances(Path(split["images"]), Path(split["annotations"]), transforms,
                             categories=categories)


class SyntheticDataModule(CocoDataModule):
    """The built-in synthetic shapes, written once under ``root`` (see
    make_synthetic_coco): train, val and test splits drawn with different
    images (``num_test=0``: no test split, the test then runs on val).
    ``seed`` draws the images; the remaining keyword arguments are
    CocoDataModule's (batch size, workers, shuffle_seed, flip_probability)."""

    def __init__(self, root: str, num_train: int = 200, num_val: int = 50, num_test: int = 50,
                 image_size: tuple[int, int] = (256, 320), object_size: str = "mixed",
                 seed: int = 0, batch_size: int = 4, num_workers: int = 0,
                 shuffle_seed: int = 0, flip_probability: float = 0.5, **options):
        splits = {}
        counts = (("train", num_train), ("val", num_val), ("test", num_test))
        for split, count in counts:
            if split == "test" and not count:
                continue
            images, annotations = make_synthetic_coco(root, split, count, tuple(image_size),
                                                      object_size, seed=seed)
            splits[split] = {"images": str(images), "annotations": str(annotations)}
        super().__init__(splits.get("train"), splits.get("val"), splits.get("test"),
                         batch_size=batch_size, num_workers=num_workers,
                         shuffle_seed=shuffle_seed, flip_probability=flip_probability,
                         **options)


class VocDataModule(DetectionDataModule):
    """Pascal VOC folders (VOC2007, VOC2012, or a custom dataset laid out the
    same way; see VocInstances): ``root`` is the year folder, and each of
    ``train``, ``val`` and the optional ``test`` is a dict with the ``split``
    name (the ImageSets list) and optionally its own ``root`` (e.g. training on
    VOC2012 trainval, testing on VOC2007 test). ``masks``: True (instance
    masks, from the Segmentation lists), False (boxes only, from the Main
    lists) or "auto" (masks where SegmentationObject has them);
    configs/data/voc.yaml sets it from the model's ``masks``. Evaluation
    adds VOC07's 11-point AP50 to COCO's metrics. The other arguments are
    DetectionDataModule's."""

    extra_metrics = ("voc07_ap50",)

    def __init__(self, root: str, train: dict, val: dict, test: dict | None = None,
                 class_names: list[str] | None = None, masks: bool | str = "auto",
                 batch_size: int = 2, num_workers: int = 0, shuffle_seed: int = 0,
                 flip_probability: float = 0.5, **options):
        splits = {}
        for stage, split in {"train": train, "val": val, "test": test}.items():
            given = {k: v for k, v in dict(split or {}).items() if v is not None}
            if given and "split" not in given:
                raise ValueError(f"data.{stage} needs 'split' (an ImageSets list name, e.g. "
                                 f"data.{stage}.split=test)")
            splits[stage] = given or None
        self.root, self.class_names_given, self.masks = root, class_names, masks
        super().__init__(splits, batch_size, num_workers, shuffle_seed, flip_probability,
                         **options)

    split_settings = "data.SPLIT.split=NAME, optionally data.SPLIT.root=DIR"

    def follow_model(self, masks: bool) -> None:
        """``masks="auto"`` for a box-only model reads boxes only, from the Main
        lists (configs/data/voc.yaml does it through ``${model.masks}``; this
        is for a datamodule built in Python or by rcnn-lightning)."""
        if self.masks == "auto" and not masks:
            self.masks = False
            self._datasets.clear()

    def _read(self, split, transforms, categories):
        try:
            return VocInstances(split.get("root") or self.root, split["split"], transforms,
                                self.class_names_given, masks=self.masks, categories=categories)
        except FileNotFoundError as error:
            if self.masks is not True or "masks=True" not in str(error):
                raise
            raise FileNotFoundError(f"{error}; a box-only model reads boxes only "
                                    "(model=faster_rcnn, or model.masks=false)") from None


def check_masks_for_mask_model(counts: MaskCounts) -> None:
    """A mask model's training data: refused when no instance has a mask;
    one warning that counts the instances without one (they take no part in
    the mask loss) when only some have."""
    with_masks, instances, source = counts
    if instances and not with_masks:
        raise ValueError(f"the training data {source} has no instance masks (none of its "
                         f"{instances} instances has a segmentation), but the model has a "
                         "mask head: train Faster R-CNN (model=faster_rcnn, or "
                         "model.masks=false)")
    if with_masks < instances:
        warnings.warn(f"{source}: {instances - with_masks} of the {instances} training "
                      "instances have no segmentation; they take no part in the mask loss "
                      "(and segm evaluation treats such instances as crowd regions)",
                      stacklevel=2)
