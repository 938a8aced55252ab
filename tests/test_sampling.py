"""EpochSampler: the order is a function of (seed, epoch), shards cover every
index, resuming skips exactly the items already seen; per-item augmentation
seeds make an item's flip independent of the global generator."""

import pytest
import torch

from detector.data import CocoInstances, detection_transforms, make_synthetic_coco
from detector.training import EpochSampler
from detector.training import sampling


def test_order_depends_on_seed_and_epoch_only():
    a, b = EpochSampler(20, shuffle=True, seed=3), EpochSampler(20, shuffle=True, seed=3)
    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(1)  # the global generator plays no part
    assert list(b) == first
    assert sorted(i for i, _ in first) == list(range(20))
    a.set_epoch(1)
    assert [i for i, _ in a] != [i for i, _ in first]
    assert list(EpochSampler(20, shuffle=True, seed=4)) != first


def test_unshuffled_is_in_order():
    assert list(EpochSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("size, world", [(10, 2), (7, 2), (5, 3), (2, 4)])
def test_shards_cover_every_index_with_equal_counts(monkeypatch, size, world):
    shards = []
    for rank in range(world):
        monkeypatch.setattr(sampling, "_world", lambda rank=rank: (rank, world))
        sampler = EpochSampler(size, shuffle=False)
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler) == -(-size // world)
    assert set().union(*map(set, shards)) == set(range(size))


def test_resume_skips_the_items_seen_in_that_epoch_only():
    sampler = EpochSampler(12, shuffle=True, seed=0)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.resume(epoch=2, items=5)
    assert list(sampler) == full[5:]
    assert list(sampler) == full[5:]  # every iterator of that epoch
    sampler.set_epoch(3)
    assert len(list(sampler)) == 12  # the next epoch is whole


def test_item_seed_fixes_the_augmentation(tmp_path):
    images, annotations = make_synthetic_coco(tmp_path, "train", 2, (64, 80))
    dataset = CocoInstances(images, annotations, detection_transforms(True, 0.5))
    flips = set()
    for seed in range(8):
        torch.manual_seed(seed)  # differs each time: must not matter
        image, _ = dataset[(0, 1234)]
        again, _ = dataset[(0, 1234)]
        assert torch.equal(image, again)
        flips.add(tuple(dataset[(0, seed)][0][0, 0, :4].tolist()))
    assert len(flips) == 2  # both outcomes of the flip occur across item seeds
    state = torch.get_rng_state()
    dataset[(1, 7)]
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is untouched
