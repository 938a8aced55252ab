"""roi_align (avg) and roi_pool against torchvision, forward and gradient."""

import pytest
import torch
import torchvision

import ops
from roi_cases import boxes, feature_map

SCALES = [1.0, 0.5, 1 / 4, 1 / 16, 1 / 32]
TOLERANCE = {torch.float64: dict(rtol=1e-9, atol=1e-9), torch.float32: dict(rtol=1e-5, atol=1e-5)}


def _forward_backward(fn, x, rois, seed=1):
    x = x.clone().requires_grad_(True)
    out = fn(x, rois)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    out.backward(grad_out)
    return out.detach(), x.grad


def _compare(ours, theirs, x, rois, dtype):
    out, grad = _forward_backward(ours, x, rois)
    ref_out, ref_grad = _forward_backward(theirs, x, rois)
    torch.testing.assert_close(out, ref_out, **TOLERANCE[dtype])
    torch.testing.assert_close(grad, ref_grad, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_matches_torchvision(aligned, sampling_ratio, scale, dtype):
    x = feature_map(dtype=dtype, seed=2)
    rois = boxes(3, 13, 17, scale, dtype=dtype, seed=3)
    size = (7, 5)

    def ours(inp, r):
        return ops.roi_align(inp, r, size, scale, sampling_ratio, aligned)

    def theirs(inp, r):
        return torchvision.ops.roi_align(inp, r, size, scale, sampling_ratio, aligned)

    _compare(ours, theirs, x, rois, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("size", [(7, 7), (2, 3), (14, 14)])
def test_roi_pool_matches_torchvision(size, scale, dtype):
    x = feature_map(dtype=dtype, seed=4)
    rois = boxes(3, 13, 17, scale, dtype=dtype, seed=5)

    def ours(inp, r):
        return ops.roi_pool(inp, r, size, scale)

    def theirs(inp, r):
        return torchvision.ops.roi_pool(inp, r, size, scale)

    _compare(ours, theirs, x, rois, dtype)


def test_many_channels_and_list_boxes_match_torchvision():
    x = feature_map(batch=2, channels=256, height=25, width=34, dtype=torch.float32, seed=6)
    per_image = [boxes(1, 25, 34, 1 / 16, dtype=torch.float32, seed=s)[:, 1:] for s in (7, 8)]
    ours = ops.roi_align(x, per_image, 7, 1 / 16, 2)
    theirs = torchvision.ops.roi_align(x, per_image, 7, 1 / 16, 2)
    torch.testing.assert_close(ours, theirs, **TOLERANCE[torch.float32])
    torch.testing.assert_close(
        ops.roi_pool(x, per_image, 7, 1 / 16), torchvision.ops.roi_pool(x, per_image, 7, 1 / 16))
