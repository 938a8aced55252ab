"""Batches grouped by orientation: every full batch is of one group, each item
once, the plain loader's batch count on every rank, deterministic, and a
mid-epoch resume skips whole batches; and the datamodule setting."""

import json
from collections import Counter

import pytest
import torch
from torchvision.io import write_png

from detector.training import CocoDataModule, EpochSampler, sampling
from detector.training.grouping import GroupedBatchSampler, orientation_groups
from detector.training.repeat_factor import RepeatFactorSampler


def test_orientation_groups():
    assert orientation_groups([0.5, 1.0, 1.5, 0.99]) == [0, 1, 1, 0]


def _index(item):
    return item[0] if isinstance(item, tuple) else item


@pytest.mark.parametrize("batch_size", [2, 3, 4])
def test_batches_are_of_one_group(batch_size):
    groups = [0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1]
    sampler = EpochSampler(len(groups), shuffle=True, seed=1)
    batches = list(GroupedBatchSampler(sampler, groups, batch_size))
    assert len(batches) == -(-len(groups) // batch_size)
    assert sorted(_index(i) for b in batches for i in b) == list(range(len(groups)))
    mixed = [b for b in batches if len({groups[_index(i)] for i in b}) > 1]
    assert len(mixed) <= 1  # the last: one group's remainder beside the other's
    full = [b for b in batches if len(b) == batch_size]
    assert len(full) >= len(groups) // batch_size
    # the same epoch, batched, keeps the sampler's items and seeds
    assert sorted(i for b in batches for i in b) == sorted(list(sampler))


def test_hand_case_in_stream_order():
    """Unshuffled 0..5 with groups P L L P P L, batches of 2: a batch is emitted
    when its group's second item arrives; nothing is left over."""
    sampler = EpochSampler(6, shuffle=False)
    batches = list(GroupedBatchSampler(sampler, [0, 1, 1, 0, 0, 1], 2))
    assert batches == [[1, 2], [0, 3], [4, 5]]  # the leftovers 4 (P) and 5 (L) share the last


def test_deterministic_and_resumable():
    groups = [0, 1] * 7
    grouped = GroupedBatchSampler(EpochSampler(14, shuffle=True, seed=3), groups, 2)
    grouped.sampler.set_epoch(1)
    full = list(grouped)
    torch.manual_seed(123)
    again = GroupedBatchSampler(EpochSampler(14, shuffle=True, seed=3), groups, 2)
    again.sampler.set_epoch(1)
    assert list(again) == full
    again.sampler.resume(epoch=1, items=3 * 2)  # the datamodule's state: 3 batches of 2
    assert list(again) == full[3:]


@pytest.mark.parametrize("world", [2, 3])
def test_every_rank_has_the_same_number_of_batches(monkeypatch, world):
    groups = [0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1]
    counts = set()
    for rank in range(world):
        monkeypatch.setattr(sampling, "_world", lambda rank=rank: (rank, world))
        for sampler in (EpochSampler(11, True, 0), RepeatFactorSampler([1.5] * 11, 0)):
            counts.add((type(sampler).__name__,
                        len(list(GroupedBatchSampler(sampler, groups, 2)))))
    assert len(counts) == 2  # one count per kind of sampler, whatever the rank


def test_datamodule_groups_portrait_and_landscape(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    entries, annotations = [], []
    for i in range(1, 9):
        height, width = (30, 20) if i % 2 else (20, 30)
        write_png(torch.zeros((3, height, width), dtype=torch.uint8), str(images / f"{i}.png"))
        entries.append({"id": i, "file_name": f"{i}.png", "height": height, "width": width})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [2, 2, 8, 8],
                            "iscrowd": 0, "area": 64})
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": entries, "annotations": annotations,
                                "categories": [{"id": 1, "name": "thing"}]}))
    split = {"images": str(images), "annotations": str(path)}
    for grouped in (False, True):
        data = CocoDataModule(split, split, batch_size=2, shuffle_seed=0,
                              group_by_aspect_ratio=grouped)
        shapes = [Counter(tuple(image.shape[-2:]) for image in batch)
                  for batch, _ in data.train_dataloader()]
        assert sum(map(sum, map(Counter.values, shapes))) == 8
        if grouped:
            assert all(len(batch) == 1 for batch in shapes)
        else:
            assert any(len(batch) == 2 for batch in shapes)  # this seed mixes them
    assert data.val_dataloader().batch_sampler.batch_size == 2  # evaluation is not grouped
