"""Reading weights and checkpoints from local files: nothing here downloads.

Every file is read with ``torch.load(weights_only=True)``: tensors and plain
containers only, so a file that would run code when unpickled is refused.
ImageNet weights are torchvision state dicts (``torch.save(model.state_dict(),
path)``); checkpoints are the ones training writes (Lightning's format).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

# Keys of the ImageNet classifier, which no backbone keeps.
CLASSIFIER_PREFIXES = ("fc.", "classifier.")

# A BatchNorm counter with no meaning once the statistics are frozen; files may
# or may not carry it.
_BN_COUNTER = "num_batches_tracked"


def load_plain(path: str | os.PathLike, what: str):
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain
    containers only. A missing file or one that would run code when unpickled
    gets an error naming ``what`` it should have been and the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"refused to load {path}: it is not a plain state dict or checkpoint; it holds "
            f"Python objects that unpickling would run as code, and torch.load(weights_only=True) "
            f"reads only tensors and plain containers ({str(error).splitlines()[0]})") from None


def read_state_dict(path: str | os.PathLike,
                    what: str = "backbone weights file") -> dict[str, torch.Tensor]:
    """Read a state dict of tensors from a local file, refusing anything else;
    errors name the file as ``what``."""
    state = load_plain(path, what)
    if not isinstance(state, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise ValueError(
            f"{what} {path} must hold a state dict (a mapping of names to tensors), "
            f"got {type(state).__name__}"
        )
    return dict(state)


def load_local_weights(
    model: nn.Module,
    path: str | os.PathLike,
    skip: Iterable[str] = CLASSIFIER_PREFIXES,
    rename: Mapping[str, str] | None = None,
) -> None:
    """Load an ImageNet state dict from the local file ``path`` into ``model``.

    ``rename`` maps a key prefix in the file to the model's prefix for it
    (e.g. ``{"classifier.0.": "fc6."}``); keys of the file that then start with
    one of the ``skip`` prefixes (the parts of the network the model drops) are
    ignored. Every other key must match the model's exactly, name and shape;
    otherwise a ValueError lists the missing, unexpected or mismatched keys.
    """
    state = read_state_dict(path)
    if rename:
        state = {_renamed(key, rename): value for key, value in state.items()}
    skip = tuple(skip)
    state = {key: value for key, value in state.items() if not key.startswith(skip)}
    load_fitting(model, state, f"weights in {path}")
    model.pretrained_from = str(path)  # every tensor of ``model`` came from the file


def load_fitting(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` if every key matches, name and shape;
    otherwise a ValueError (starting with ``source``) lists the missing,
    unexpected or mismatched keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(_BN_COUNTER)]
    unexpected = [k for k in state if k not in expected and not k.endswith(_BN_COUNTER)]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    problems = [
        f"{label} {len(keys)} keys: {_listed(keys)}"
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch (file vs model) for", mismatched),
        )
        if keys
    ]
    if problems:
        raise ValueError(f"{source} do not fit {type(model).__name__}: " + "; ".join(problems))
    state = {key: value for key, value in state.items() if key in expected}
    model.load_state_dict(state, strict=False)


def _renamed(key: str, rename: Mapping[str, str]) -> str:
    for old, new in rename.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def _listed(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown}, ... ({len(keys) - limit} more)"


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint's contents (on the CPU), refusing anything but tensors and
    plain containers."""
    checkpoint = load_plain(path, "checkpoint")
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a checkpoint of this project (no 'state_dict'); "
                         "torchvision weights load with detector.from_torchvision")
    return dict(checkpoint)
