"""Every op and mode against the pure-PyTorch reference (ops.reference), and
roi_warp against its definition in terms of roi_align."""

import pytest
import torch

import ops
from ops import reference
from roi_cases import boxes, feature_map

SCALES = [1.0, 1 / 4, 1 / 16, 1 / 32]
TOL = dict(rtol=1e-9, atol=1e-9)


def _forward_backward(fn, x, rois):
    x = x.clone().requires_grad_(True)
    out = fn(x, rois)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(9), dtype=out.dtype))
    return out.detach(), x.grad


def _assert_same(ours, ref, x, rois):
    out, grad = _forward_backward(ours, x, rois)
    ref_out, ref_grad = _forward_backward(ref, x, rois)
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(grad, ref_grad, **TOL)


def _case(scale, seed):
    x = feature_map(batch=2, channels=4, seed=seed)
    return x, boxes(2, 13, 17, scale, seed=seed + 1, per_kind=2)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2, 3])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_roi_align_matches_reference(mode, aligned, sampling_ratio, scale):
    x, rois = _case(scale, seed=10)
    _assert_same(
        lambda i, r: ops.roi_align(i, r, (5, 4), scale, sampling_ratio, aligned, mode),
        lambda i, r: reference.roi_align(i, r, (5, 4), scale, sampling_ratio, aligned, mode),
        x, rois)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_roi_warp_matches_reference(mode, sampling_ratio, scale):
    x, rois = _case(scale, seed=20)
    _assert_same(
        lambda i, r: ops.roi_warp(i, r, (5, 4), scale, sampling_ratio, mode),
        lambda i, r: reference.roi_warp(i, r, (5, 4), scale, sampling_ratio, mode),
        x, rois)


@pytest.mark.parametrize("scale", SCALES)
def test_roi_pool_matches_reference(scale):
    x, rois = _case(scale, seed=30)
    _assert_same(
        lambda i, r: ops.roi_pool(i, r, (5, 4), scale),
        lambda i, r: reference.roi_pool(i, r, (5, 4), scale),
        x, rois)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_roi_warp_is_roi_align_of_rounded_boxes(mode, scale):
    """DESIGN.md: roi_warp(x, b) == roi_align(x, b_rounded, spatial_scale=1)."""
    x, rois = _case(scale, seed=40)
    rounded = rois.clone()
    rounded[:, 1:] = reference.round_half_away(rois[:, 1:] * scale)
    _assert_same(
        lambda i, r: ops.roi_warp(i, r, 3, scale, 2, mode),
        lambda i, r: ops.roi_align(i, rounded, 3, 1.0, 2, False, mode),
        x, rois)


def test_roi_warp_rounds_like_roi_pool():
    """A box whose scaled corners are already integers is not moved by roi_warp."""
    x = feature_map(batch=1, channels=2)
    rois = torch.tensor([[0, 32.0, 16.0, 160.0, 192.0]], dtype=torch.float64)
    torch.testing.assert_close(ops.roi_warp(x, rois, 4, 1 / 16, 2, "avg"),
                               ops.roi_align(x, rois, 4, 1 / 16, 2, False, "avg"))
    shifted = rois + torch.tensor([[0, 7.0, 7.0, 7.0, 7.0]], dtype=torch.float64)  # < half a cell
    torch.testing.assert_close(ops.roi_warp(x, shifted, 4, 1 / 16, 2, "avg"),
                               ops.roi_warp(x, rois, 4, 1 / 16, 2, "avg"))


def test_hand_computed_values():
    """A 1-channel ramp: bilinear samples of a linear function are exact."""
    h, w = 6, 8
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(w, dtype=torch.float64), indexing="ij")
    x = (10 * ys + xs)[None, None]
    rois = torch.tensor([[0, 1.0, 1.0, 5.0, 3.0]], dtype=torch.float64)
    # roi_align, 2x2 bins, 1 sample each: centres (y, x) = (1.5, 2), (1.5, 4), (2.5, 2), (2.5, 4)
    out = ops.roi_align(x, rois, 2, 1.0, 1)
    torch.testing.assert_close(out[0, 0], torch.tensor([[17.0, 19.0], [27.0, 29.0]],
                                                       dtype=torch.float64))
    # aligned=True shifts every sample by -0.5 in both axes: -5.5 on the ramp
    out = ops.roi_align(x, rois, 2, 1.0, 1, aligned=True)
    torch.testing.assert_close(out[0, 0], torch.tensor([[11.5, 13.5], [21.5, 23.5]],
                                                       dtype=torch.float64))
    # roi_pool: cells y 1..3, x 1..5, bins of 1.5 x 2.5 cells spanning rows
    # [1, 3) / [2, 4) and cols [1, 4) / [3, 6); the max is each bin's last cell
    out = ops.roi_pool(x, rois, 2, 1.0)
    torch.testing.assert_close(out[0, 0], torch.tensor([[23.0, 25.0], [33.0, 35.0]],
                                                       dtype=torch.float64))
