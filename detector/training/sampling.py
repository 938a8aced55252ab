"""The order in which images are read: a function of (seed, epoch) only, split
across processes, and resumable in the middle of an epoch.

That is what makes ``ckpt_path=...`` continue exactly: the permutation of an
epoch does not depend on how many times the global random generator was
used before, and each training image carries its own augmentation seed (see
``CocoInstances.__getitem__``), so a resumed run reads the same images with
the same flips as the run it continues.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampler(Sampler):
    """Indices of a dataset of ``size`` items for the current epoch.

    With ``shuffle=True`` each epoch is a permutation drawn from
    ``(seed, epoch)`` and every index comes with a seed for its augmentation:
    items are ``(index, augmentation_seed)`` pairs. Without shuffling, items
    are the indices in order. In a distributed run each process takes every
    ``world_size``-th item, the list being padded by repeating its start so
    all processes get the same count (evaluation counts each image once, see
    ``gather_results``).

    ``resume(epoch, items)`` skips the first ``items`` items of this process
    in that epoch (the ones a checkpoint says were already trained on).
    """

    def __init__(self, size: int, shuffle: bool, seed: int = 0):
        if size < 1:
            raise ValueError(f"EpochSampler needs a non-empty dataset, got size={size}")
        self.size, self.shuffle, self.seed = int(size), bool(shuffle), int(seed)
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = int(epoch)
        if self._resume is not None and self._resume[0] != self.epoch:
            self._resume = None

    def resume(self, epoch: int, items: int) -> None:
        self._resume = (int(epoch), int(items))

    def _epoch_length(self) -> int:
        """Items in an epoch, over all processes (before the padding)."""
        return self.size

    def __len__(self) -> int:
        return -(-self._epoch_length() // _world()[1])

    def _global_items(self) -> list:
        """The epoch's items over all processes, in order."""
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        seeds = torch.randint(2**62, (self.size,), generator=generator).tolist()
        return [(i, seeds[i]) for i in order]

    def epoch_items(self) -> list:
        """This process's items of the current epoch, the resumed ones included."""
        rank, world = _world()
        items = self._global_items()
        total = len(self) * world
        padded = (items * -(-total // len(items)))[:total]
        return padded[rank::world]

    def skipped(self) -> int:
        """How many of this process's items of the epoch a resume skips."""
        return self._resume[1] if self._resume and self._resume[0] == self.epoch else 0

    def __iter__(self) -> Iterator:
        return iter(self.epoch_items()[self.skipped():])
