"""Training augmentations built on torchvision.transforms.v2: the image, its
``tv_tensors.BoundingBoxes`` and its ``tv_tensors.Mask`` move together, and
every per-instance field of the target follows the boxes that survive.

``Augment(steps)`` runs the steps in order, then drops the instances that
they removed or shrank below ``min_size`` pixels (``SanitizeBoundingBoxes``
with every per-instance field, not only ``labels``: the pitfall of
torchvision issue 8294). An image left with no instance trains as a
background image. The presets of configs/augment/ are compositions of this;
``preset(name)`` builds them in Python.

Randomness comes from torch's global generator, which the dataset seeds per
item (``InstanceDataset.__getitem__`` with an (index, seed) key, seeds drawn
by the sampler from the run's seed), so an augmentation is a function of the
seed and the item: the same in a resumed run and in any worker. Evaluation
never augments (the datamodules pass no transform to val and test).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

PRESETS = ("flip", "photometric", "crop", "lsj")


def per_instance_fields(inputs) -> tuple[torch.Tensor, ...]:
    """The target's per-instance tensors beside the boxes and masks (labels,
    has_mask, and any other such as iscrowd or area): plain tensors whose
    first dimension is the number of boxes. SanitizeBoundingBoxes indexes
    them with the boxes it keeps."""
    target = inputs[1]
    count = len(target["boxes"])
    return tuple(value for key, value in target.items()
                 if isinstance(value, torch.Tensor)
                 and not isinstance(value, (tv_tensors.BoundingBoxes, tv_tensors.Mask))
                 and value.ndim >= 1 and value.shape[0] == count)


class WithInstances(v2.Transform):
    """Runs ``transform`` only on images that have an instance (RandomIoUCrop
    chooses its crop by the boxes' IoU and cannot run without one) and whose
    sides are long enough for its smallest crop to keep a pixel (RandomIoUCrop
    divides by a crop side that rounds to 0 on an image of 3 pixels or fewer)."""

    def __init__(self, transform: v2.Transform):
        super().__init__()
        self.inner = transform

    def forward(self, *inputs):
        sample = inputs if len(inputs) > 1 else inputs[0]
        if len(sample[1]["boxes"]) == 0:
            return sample
        if min(F.get_size(sample[0])) * getattr(self.inner, "min_scale", 1.0) < 1:
            return sample
        return self.inner(sample)


class Augment(v2.Transform):
    """``steps`` (torchvision v2 transforms, in order), then the instances
    smaller than ``min_size`` pixels (width or height) or outside the image
    dropped with every per-instance field. Boxes are clamped to the image
    first, so no box reaches outside it."""

    def __init__(self, steps: Sequence[v2.Transform], min_size: float = 1.0):
        super().__init__()
        steps = list(steps)
        for i, step in enumerate(steps):
            if not callable(step):
                raise TypeError(f"augment step {i} is {step!r}, not a transform (a config "
                                "entry needs _target_: torchvision.transforms.v2.NAME)")
        if not float(min_size) >= 1.0:
            raise ValueError(f"augment min_size must be >= 1 pixel, got {min_size!r}")
        self.steps = steps
        self.min_size = float(min_size)
        self.pipeline = v2.Compose([*steps, v2.ClampBoundingBoxes(),
                                    v2.SanitizeBoundingBoxes(min_size=self.min_size,
                                                             labels_getter=per_instance_fields)])

    def forward(self, *inputs):
        return self.pipeline(*inputs)

    def __repr__(self) -> str:
        steps = ", ".join(type(s).__name__ for s in self.steps)
        return f"Augment([{steps}], min_size={self.min_size})"


def flip_steps(flip_probability: float = 0.5) -> list[v2.Transform]:
    if not 0.0 <= float(flip_probability) <= 1.0:
        raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability!r}")
    return [v2.RandomHorizontalFlip(float(flip_probability))]


def describe(transform) -> str:
    """A training transform on one line, every step with its settings (what a
    checkpoint keeps, to refuse resuming with another augmentation): the same
    for the same pipeline in any process, built from a config or by preset()
    (object addresses left out)."""
    def one(step) -> str:
        return re.sub(r" at 0x[0-9a-fA-F]+", "", " ".join(repr(step).split()))

    if isinstance(transform, Augment):
        steps = ", ".join(one(s) for s in transform.steps)
        return f"Augment([{steps}], min_size={transform.min_size})"
    return one(transform)


def preset(name: str, flip_probability: float = 0.5, lsj_size: int = 512,
           min_size: float = 1.0) -> Augment:
    """One of PRESETS, as configs/augment/NAME.yaml composes it:
    ``flip`` (horizontal flip), ``photometric`` (flip + colour jitter), ``crop``
    (flip + random IoU crop, SSD's), ``lsj`` (flip + large-scale jitter: the
    image rescaled so that it fits a ``lsj_size`` square times a factor in
    [0.1, 2.0], then cropped or padded to that square)."""
    steps = flip_steps(flip_probability)
    if name == "flip":
        pass
    elif name == "photometric":
        steps.append(v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.05))
    elif name == "crop":
        steps.append(WithInstances(v2.RandomIoUCrop()))
    elif name == "lsj":
        steps.append(LargeScaleJitter(lsj_size))
    else:
        raise ValueError(f"unknown augment preset {name!r}; expected one of {', '.join(PRESETS)}")
    return Augment(steps, min_size)


class LargeScaleJitter(v2.Compose):
    """Large-scale jitter to a ``size`` x ``size`` canvas (pixels of the image
    before the model's own resize): the image rescaled to fit the square
    times a factor in ``scale_range``, then cropped at a random place or
    padded with zeros (bottom and right) to the square."""

    def __init__(self, size: int, scale_range: Sequence[float] = (0.1, 2.0)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"large-scale jitter size must be a positive number of pixels, "
                             f"got {size!r}")
        low, high = (float(v) for v in scale_range)
        if not 0 < low <= high:
            raise ValueError(f"large-scale jitter scale_range must be 0 < low <= high, got "
                             f"{tuple(scale_range)!r}")
        super().__init__([v2.ScaleJitter((size, size), scale_range=(low, high)),
                          v2.RandomCrop(size, pad_if_needed=True)])
