"""The box checks decide alike on every device: the tensor form that a GPU
runs (torch.ops.roi_ops._box_problems, as an asynchronous device assertion or
a synchronous reduction) refuses exactly the rows the CPU check refuses, also
at the size limit of adaptive sampling, where float32 arithmetic rounds the
other way."""

import numpy as np
import pytest
import torch

import ops
from ops._library import kernels

MAX_GRID = 1024  # kMaxAdaptiveGrid in ops/csrc/checks.h


def _limit_pairs():
    """(x1, x2) float32 pairs whose width, with pooled width 1 at scale 1, is
    over the limit in float64 but exactly at it in float32, and the reverse
    case of a width just under it."""
    over = (np.float32(-0.3), np.float32(1023.7))
    under = (np.float32(0.25), np.float32(1024.25))
    return over, under


def test_limit_cases_are_where_float32_and_float64_disagree():
    (a, b), _ = _limit_pairs()
    assert float(b) - float(a) > MAX_GRID  # float64: too large
    assert float(np.float32(b) - np.float32(a)) <= MAX_GRID  # float32: at the limit


@pytest.mark.parametrize("sampling_ratio", [0, -1])
def test_device_decision_equals_cpu_check_at_the_size_limit(sampling_ratio):
    (a, b), (c, d) = _limit_pairs()
    rois = torch.tensor([[0, a, 0, b, 1], [0, 0, a, 1, b], [0, c, 0, d, 1], [0, 0, c, 1, d]],
                        dtype=torch.float32)
    expected = []
    for row in rois:
        try:
            ops.roi_align(torch.zeros(1, 1, 4, 4), row[None], 1, 1.0, sampling_ratio)
            expected.append(False)
        except ValueError as error:
            assert "too large for adaptive sampling" in str(error)
            expected.append(True)
    assert expected == [True, True, False, False]
    flags = kernels()._box_problems(rois, 1, 1.0, 1, 1, sampling_ratio)
    assert flags.tolist() == expected


def test_device_decision_equals_cpu_check_on_every_kind_of_bad_row():
    rows = [
        [0, 1, 1, 5, 5],  # fine
        [0.5, 1, 1, 5, 5],  # batch index not an integer
        [-1, 1, 1, 5, 5], [2, 1, 1, 5, 5],  # out of range for a batch of 2
        [0, float("nan"), 1, 5, 5], [0, 1, float("inf"), 5, 5],  # not finite
        [1, 0, 0, 2e6, 1],  # too large for adaptive sampling at 1/16
    ]
    for dtype in (torch.float32, torch.float64):
        rois = torch.tensor(rows, dtype=dtype)
        flags = kernels()._box_problems(rois, 2, 1 / 16, 7, 7, -1).tolist()
        for row, flag in zip(rois, flags):
            refused = False
            try:
                ops.roi_align(torch.zeros(2, 1, 4, 4, dtype=dtype), row[None], 7, 1 / 16, -1)
            except ValueError:
                refused = True
            assert flag == refused, row
        assert flags == [False] + [True] * 6
    # A fixed sampling ratio has no size limit.
    assert not kernels()._box_problems(torch.tensor([rows[-1]]), 2, 1 / 16, 7, 7, 2).any()
