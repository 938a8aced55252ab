"""Batches of images of one orientation: portrait with portrait, landscape
(or square) with landscape, so that a batch pads little when the model
stacks it (torchvision's references group by aspect ratio the same way).

Batches are formed from the epoch's items in order: an item joins its
group's open batch, which is emitted when full; what is left at the end of
the epoch is emitted group by group in batches of ``batch_size`` (mixed only
where a group's remainder and the next's share one). An epoch therefore has
``ceil(items / batch_size)`` batches, the same count on every process, and a
resumed epoch skips whole batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .sampling import EpochSampler


def orientation_groups(aspect_ratios: Sequence[float]) -> list[int]:
    """0 for a portrait image (width / height < 1), 1 for landscape or square."""
    return [0 if ratio < 1 else 1 for ratio in aspect_ratios]


class GroupedBatchSampler:
    """Batches of ``sampler``'s items (EpochSampler or a subclass) whose
    images share a group (``groups[index]``). Lightning sets the epoch on
    ``sampler``."""

    def __init__(self, sampler: EpochSampler, groups: Sequence[int], batch_size: int):
        if len(groups) != sampler.size:
            raise ValueError(f"{len(groups)} group ids for a sampler of {sampler.size} items")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler, self.groups, self.batch_size = sampler, list(groups), int(batch_size)

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def epoch_batches(self) -> list[list]:
        """This process's batches of the current epoch, the resumed ones included."""
        batches, open_batches = [], {}
        for item in self.sampler.epoch_items():
            index = item[0] if isinstance(item, tuple) else item
            batch = open_batches.setdefault(self.groups[index], [])
            batch.append(item)
            if len(batch) == self.batch_size:
                batches.append(batch)
                open_batches[self.groups[index]] = []
        rest = [item for group in sorted(open_batches) for item in open_batches[group]]
        batches += [rest[i:i + self.batch_size] for i in range(0, len(rest), self.batch_size)]
        return batches

    def __iter__(self) -> Iterator[list]:
        return iter(self.epoch_batches()[self.sampler.skipped() // self.batch_size:])
