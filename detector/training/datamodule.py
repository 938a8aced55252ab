"""LightningDataModule over COCO-format datasets (the synthetic one included)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ..data.coco import CocoInstances, collate, detection_transforms
from ..data.synthetic import make_synthetic_coco
from .sampling import EpochSampler


class CocoDataModule(pl.LightningDataModule):
    """Train / val / test splits, each an (images folder, annotation json) pair.

    Args:
        train, val, test: dicts with ``images`` and ``annotations`` paths
            (test defaults to val).
        min_size, max_size: resize of the shorter / longer side (data pipeline).
        batch_size, num_workers: loader settings (evaluation uses batch_size too).
        shuffle_seed: the training order and augmentations (see EpochSampler).

    The loaders shard the data across processes themselves (EpochSampler), so
    a distributed Trainer needs ``use_distributed_sampler=False`` (as in
    configs/trainer/). The datamodule's checkpointed state is how far into
    the epoch training got, so a run resumed from a mid-epoch checkpoint reads
    the rest of that epoch's images, in the same order.
    """

    def __init__(self, train: dict, val: dict, test: dict | None = None, min_size: int = 256,
                 max_size: int = 426, batch_size: int = 2, num_workers: int = 0,
                 shuffle_seed: int = 0):
        super().__init__()
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.splits = {"train": train, "val": val, "test": test or val}
        for stage, split in self.splits.items():
            missing = {"images", "annotations"} - set(split)
            if missing:
                raise ValueError(f"data split '{stage}' needs {sorted(missing)}")
        self.min_size, self.max_size = min_size, max_size
        self.batch_size, self.num_workers = int(batch_size), num_workers
        self.shuffle_seed = int(shuffle_seed)
        self._datasets: dict[str, CocoInstances] = {}
        self._train_sampler: EpochSampler | None = None

    def dataset(self, stage: str) -> CocoInstances:
        if stage not in self._datasets:
            split = self.splits[stage]
            transforms = detection_transforms(stage == "train", self.min_size, self.max_size)
            self._datasets[stage] = CocoInstances(Path(split["images"]),
                                                  Path(split["annotations"]), transforms)
        return self._datasets[stage]

    @property
    def class_names(self) -> list[str]:
        return self.dataset("train").class_names

    @property
    def category_ids(self) -> list[int]:
        """The category id of each label 1..K (COCO ids may have gaps)."""
        return list(self.dataset("train").category_ids)

    def _loader(self, stage: str, sampler: EpochSampler) -> DataLoader:
        if (self.trainer is not None and self.trainer.world_size > 1
                and self.trainer._accelerator_connector.use_distributed_sampler):
            raise ValueError("CocoDataModule shards the data across processes itself; "
                             "create the Trainer with use_distributed_sampler=False")
        # the loader's own generator, so that creating its iterator leaves the
        # global one (which the model's sampling uses) untouched
        return DataLoader(self.dataset(stage), batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.num_workers, collate_fn=collate,
                          persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.shuffle_seed))

    def train_sampler(self) -> EpochSampler:
        if self._train_sampler is None:
            self._train_sampler = EpochSampler(len(self.dataset("train")), True,
                                               self.shuffle_seed)
        return self._train_sampler

    def train_dataloader(self):
        return self._loader("train", self.train_sampler())

    def val_dataloader(self):
        return self._loader("val", EpochSampler(len(self.dataset("val")), False))

    def test_dataloader(self):
        return self._loader("test", EpochSampler(len(self.dataset("test")), False))

    def predict_dataloader(self):
        return self.test_dataloader()

    # resuming ---------------------------------------------------------------
    def state_dict(self) -> dict:
        """Saved in checkpoints: the epoch and how many of its batches were trained."""
        if self.trainer is None:
            return {}
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": self.trainer.current_epoch, "batches": done}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.train_sampler().resume(state["epoch"], state["batches"] * self.batch_size)


class SyntheticDataModule(CocoDataModule):
    """The built-in synthetic shapes, written once under ``root`` (see
    make_synthetic_coco): a train split and a val split (also the test split)
    drawn with different images. ``seed`` draws the images; the remaining
    keyword arguments are CocoDataModule's (resize, batch size, workers,
    shuffle_seed)."""

    def __init__(self, root: str, num_train: int = 200, num_val: int = 50,
                 image_size: tuple[int, int] = (256, 320), object_size: str = "mixed",
                 seed: int = 0, min_size: int = 256, max_size: int = 320, batch_size: int = 4,
                 num_workers: int = 0, shuffle_seed: int = 0):
        splits = {}
        for split, count in (("train", num_train), ("val", num_val)):
            images, annotations = make_synthetic_coco(root, split, count, tuple(image_size),
                                                      object_size, seed=seed)
            splits[split] = {"images": str(images), "annotations": str(annotations)}
        super().__init__(splits["train"], splits["val"], min_size=min_size, max_size=max_size,
                         batch_size=batch_size, num_workers=num_workers,
                         shuffle_seed=shuffle_seed)
