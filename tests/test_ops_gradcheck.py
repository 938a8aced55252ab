"""Numerical gradients (float64 gradcheck) of every op and mode."""

import pytest
import torch

import ops

# Boxes kept away from cell boundaries and ties so the finite differences
# never straddle a kink of max or of the bilinear weights.
ROIS = torch.tensor([
    [0, 1.3, 2.1, 9.7, 7.4],
    [1, -2.2, -1.6, 4.45, 3.3],
    [1, 3.1, 0.7, 13.8, 9.9],
    [0, 6.2, 4.6, 6.9, 5.3],
], dtype=torch.float64)


def _input(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 8, 11, generator=g, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_roi_align_gradcheck(mode, sampling_ratio, aligned):
    assert torch.autograd.gradcheck(
        lambda x: ops.roi_align(x, ROIS, (3, 4), 1.0, sampling_ratio, aligned, mode), (_input(),))


@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_roi_warp_gradcheck(mode, sampling_ratio):
    assert torch.autograd.gradcheck(
        lambda x: ops.roi_warp(x, ROIS, (3, 4), 1.0, sampling_ratio, mode), (_input(),))


def test_roi_pool_gradcheck():
    assert torch.autograd.gradcheck(lambda x: ops.roi_pool(x, ROIS, (3, 4), 1.0), (_input(),))


@pytest.mark.parametrize("op", ["roi_align", "roi_warp", "roi_pool"])
def test_gradcheck_at_stride_16(op):
    fn = getattr(ops, op)
    rois = ROIS.clone()
    rois[:, 1:] *= 16
    assert torch.autograd.gradcheck(lambda x: fn(x, rois, 3, 1 / 16), (_input(1),))
