"""Repeat-factor sampling (LVIS's rule) on a hand-computed case: the factors,
the counts per epoch, the mean of stochastic rounding, determinism, shards per
rank and mid-epoch resume; and the datamodule setting."""

import json
import math
from collections import Counter

import pytest
import torch
from torchvision.io import write_png

from detector.training import CocoDataModule, sampling
from detector.training.repeat_factor import RepeatFactorSampler, repeat_factors

# five images: class 1 in four of them (f = 0.8), classes 2 and 3 in one each (f = 0.2),
# the last image has no instance
LABELS = [{1, 2}, {1}, {1}, {1, 3}, set()]


def test_factors_by_hand():
    # t = 0.8: class 1 sqrt(0.8 / 0.8) = 1; classes 2 and 3 sqrt(0.8 / 0.2) = 2
    assert repeat_factors(LABELS, 0.8) == pytest.approx([2, 1, 1, 2, 1])
    # t = 0.45: sqrt(0.45 / 0.2) = 1.5; t = 0.1: every class is frequent enough
    assert repeat_factors(LABELS, 0.45) == pytest.approx([1.5, 1, 1, 1.5, 1])
    assert repeat_factors(LABELS, 0.1) == [1, 1, 1, 1, 1]


def test_whole_factors_repeat_exactly_every_epoch():
    sampler = RepeatFactorSampler(repeat_factors(LABELS, 0.8), seed=0)
    assert len(sampler) == 7
    for epoch in range(5):
        sampler.set_epoch(epoch)
        items = list(sampler)
        assert Counter(i for i, _ in items) == {0: 2, 1: 1, 2: 1, 3: 2, 4: 1}
        seeds = [s for _, s in items]
        assert len(set(seeds)) == len(seeds)  # a repeat is augmented differently


def test_fractional_factors_repeat_on_average():
    sampler = RepeatFactorSampler([1.5, 1, 1, 1.5, 1], seed=0)
    counts = Counter()
    epochs = 1000
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        items = list(sampler)
        assert len(items) == 6  # round(sum of factors), every epoch
        counts.update(i for i, _ in items)
    # stochastic rounding gives 1.5 on average; fitting the epoch to 6 items moves it
    # by at most 1/4 x 1/5 (one extra item drawn among five, one epoch in four)
    for image in (0, 3):
        assert counts[image] / epochs == pytest.approx(1.5, abs=0.07)
    for image in (1, 2, 4):
        assert counts[image] / epochs == pytest.approx(1.0, abs=0.07)


def test_order_is_a_function_of_seed_and_epoch():
    a, b = RepeatFactorSampler([2, 1, 1.5], seed=3), RepeatFactorSampler([2, 1, 1.5], seed=3)
    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(1)
    assert list(b) == first
    b.set_epoch(1)
    assert list(b) != first
    assert list(RepeatFactorSampler([2, 1, 1.5], seed=4)) != first


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_share_the_epoch_and_resume(monkeypatch, world):
    factors = repeat_factors(LABELS, 0.8)
    whole = RepeatFactorSampler(factors, seed=5)
    whole.set_epoch(2)
    everything = list(whole)
    shards = []
    for rank in range(world):
        monkeypatch.setattr(sampling, "_world", lambda rank=rank: (rank, world))
        sampler = RepeatFactorSampler(factors, seed=5)
        sampler.set_epoch(2)
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler) == math.ceil(7 / world)
        sampler.resume(epoch=2, items=1)
        assert list(sampler) == shards[-1][1:]
    interleaved = [shard[i] for i in range(len(shards[0])) for shard in shards]
    assert interleaved[:7] == everything  # the same epoch, dealt round the ranks


def test_bad_threshold_is_named():
    with pytest.raises(ValueError, match="data.repeat_threshold"):
        repeat_factors(LABELS, 0)
    with pytest.raises(ValueError, match="data.sampler must be one of"):
        CocoDataModule(sampler="balanced")


def test_datamodule_repeats_the_rare_class(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    entries, annotations = [], []
    for i, labels in enumerate(LABELS, start=1):
        write_png(torch.zeros((3, 20, 30), dtype=torch.uint8), str(images / f"{i}.png"))
        entries.append({"id": i, "file_name": f"{i}.png", "height": 20, "width": 30})
        for label in sorted(labels):
            annotations.append({"id": len(annotations) + 1, "image_id": i,
                                "category_id": label, "bbox": [2, 2, 10, 10], "iscrowd": 0,
                                "area": 100})
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": entries, "annotations": annotations, "categories": [
        {"id": c, "name": f"c{c}"} for c in (1, 2, 3)]}))
    split = {"images": str(images), "annotations": str(path)}
    data = CocoDataModule(split, split, sampler="repeat_factor", repeat_threshold=0.8)
    sampler = data.train_dataloader().sampler
    assert Counter(i for i, _ in sampler) == {0: 2, 1: 1, 2: 1, 3: 2, 4: 1}
    assert len(data.train_dataloader()) == 4  # 7 items in batches of 2
