"""Repeat-factor sampling for unbalanced classes (LVIS, Gupta et al. 2019):
images with a rare class are read more often.

An image's repeat factor is ``max over its classes c of max(1, sqrt(t / f_c))``,
``f_c`` being the fraction of the training images that contain class ``c``
and ``t`` the threshold (classes in fewer than a fraction ``t`` of the images
are repeated); an image with no instance has factor 1. Each epoch every image
is taken ``floor(r)`` times plus once more with probability ``frac(r)``
(stochastic rounding, as detectron2's RepeatFactorTrainingSampler), shuffled,
and cut or cycled to ``round(sum(r))`` items so every epoch (and every
process) has the same length.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from .sampling import EpochSampler


def repeat_factors(image_labels: Sequence[set[int]], threshold: float) -> list[float]:
    """Each image's repeat factor from the labels it contains (LVIS's rule)."""
    if not 0.0 < float(threshold) <= 1.0:
        raise ValueError(f"data.repeat_threshold must be a fraction of images in (0, 1], "
                         f"got {threshold!r}")
    if not image_labels:
        raise ValueError("repeat-factor sampling needs a non-empty training split")
    images = len(image_labels)
    counts = Counter(label for labels in image_labels for label in set(labels))
    by_class = {c: max(1.0, math.sqrt(threshold / (k / images))) for c, k in counts.items()}
    return [max((by_class[c] for c in labels), default=1.0) for labels in image_labels]


class RepeatFactorSampler(EpochSampler):
    """EpochSampler over an epoch of repeated images: items are (index,
    augmentation_seed), a repeated image drawing a seed per repeat; the
    epoch is a function of (seed, epoch) only, sharded per process and
    resumable mid-epoch as EpochSampler's."""

    def __init__(self, factors: Sequence[float], seed: int = 0):
        super().__init__(len(factors), True, seed)
        self.factors = torch.tensor([float(f) for f in factors], dtype=torch.float64)
        if not bool((self.factors >= 1).all()):
            raise ValueError("repeat factors must be >= 1")

    def _epoch_length(self) -> int:
        return max(1, round(float(self.factors.sum())))

    def _global_items(self) -> list:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        whole = self.factors.floor()
        extra = torch.rand(self.size, generator=generator, dtype=torch.float64)
        counts = (whole + (extra < self.factors - whole)).long()
        order = torch.arange(self.size).repeat_interleave(counts)
        order = order[torch.randperm(len(order), generator=generator)].tolist()
        length = self._epoch_length()
        order = (order * -(-length // len(order)))[:length]
        seeds = torch.randint(2**62, (length,), generator=generator).tolist()
        return list(zip(order, seeds))
