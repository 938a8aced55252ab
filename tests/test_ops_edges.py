"""Sizes at their lower bounds: feature maps with no cells, zero channels or
images, absurd map sizes, for every operator, forward and backward (CPU).
tests/test_ops_cuda.py runs the same cases on a GPU."""

import pytest
import torch

import ops
from ops._library import ALIGN_HALF_PIXEL, ALIGN_LEGACY, WARP, kernels

FORWARD = [
    ("roi_align", lambda x, r: ops.roi_align(x, r, 2, 1.0, 2)),
    ("roi_align_aligned_max", lambda x, r: ops.roi_align(x, r, 2, 1.0, -1, True, "max")),
    ("roi_warp_max", lambda x, r: ops.roi_warp(x, r, 2, 1.0, 2, "max")),
    ("roi_warp_avg", lambda x, r: ops.roi_warp(x, r, 2, 1.0, -1, "avg")),
    ("roi_pool", lambda x, r: ops.roi_pool(x, r, 2, 1.0)),
]
FORWARD_IDS = [name for name, _ in FORWARD]
FORWARD_FNS = [fn for _, fn in FORWARD]
EMPTY_MAPS = [(0, 8), (8, 0), (0, 0)]
# A box that straddles the empty axis: its samples lie in [-1, 0], which a
# map of size 0 once took as valid and read before the tensor.
BOX = [[0.0, 1.0, -0.5, 5.0, 0.5]]


@pytest.mark.parametrize("size", EMPTY_MAPS, ids=["h0", "w0", "h0w0"])
@pytest.mark.parametrize("fn", FORWARD_FNS, ids=FORWARD_IDS)
def test_empty_map_with_boxes_is_refused(fn, size, device="cpu"):
    x = torch.zeros(1, 4, *size, device=device, requires_grad=True)
    with pytest.raises(ValueError, match=rf"feature map is {size[0]}x{size[1]} .* no cell"):
        fn(x, torch.tensor(BOX, device=device))


@pytest.mark.parametrize("size", EMPTY_MAPS, ids=["h0", "w0", "h0w0"])
@pytest.mark.parametrize("fn", FORWARD_FNS, ids=FORWARD_IDS)
def test_empty_map_without_boxes_gives_empty_output_and_gradient(fn, size, device="cpu"):
    x = torch.zeros(1, 4, *size, device=device, requires_grad=True)
    out = fn(x, torch.zeros(0, 5, device=device))
    assert out.shape == (0, 4, 2, 2)
    out.sum().backward()
    assert x.grad.shape == x.shape


def _bilinear_backward(device, height, width, num_rois=1, batch=1, channels=4, max_mode=False,
                       box_mode=ALIGN_LEGACY):
    grad = torch.ones(num_rois, channels, 2, 2, device=device)
    rois = torch.tensor(BOX * num_rois, device=device).reshape(num_rois, 5)
    inp = torch.zeros(batch, channels, height, width, device=device) if max_mode else None
    return kernels()._bilinear_backward(grad, rois, inp, 1.0, batch, channels, height, width,
                                        2, box_mode, max_mode, False)


def _pool_backward(device, height, width, num_rois=1, batch=1, channels=4):
    grad = torch.ones(num_rois, channels, 2, 2, device=device)
    rois = torch.tensor(BOX * num_rois, device=device).reshape(num_rois, 5)
    argmax = torch.full_like(grad, -1, dtype=torch.int32)
    return kernels()._roi_pool_backward(grad, rois, argmax, 1.0, batch, channels, height, width,
                                        False)


@pytest.mark.parametrize("size", EMPTY_MAPS, ids=["h0", "w0", "h0w0"])
@pytest.mark.parametrize("box_mode", [ALIGN_LEGACY, ALIGN_HALF_PIXEL, WARP])
@pytest.mark.parametrize("max_mode", [False, True], ids=["avg", "max"])
def test_backward_into_empty_map_is_refused(size, box_mode, max_mode, device="cpu"):
    """The backward ops, called directly, refuse to scatter into no cells."""
    with pytest.raises(ValueError, match=rf"feature map is {size[0]}x{size[1]} .* no cell"):
        _bilinear_backward(device, *size, max_mode=max_mode, box_mode=box_mode)
    with pytest.raises(ValueError, match=rf"feature map is {size[0]}x{size[1]} .* no cell"):
        _pool_backward(device, *size)


def test_backward_without_boxes_into_empty_map_gives_zeros(device="cpu"):
    for height, width in EMPTY_MAPS:
        grad = _bilinear_backward(device, height, width, num_rois=0)
        assert grad.shape == (1, 4, height, width)
        assert _pool_backward(device, height, width, num_rois=0).shape == (1, 4, height, width)


@pytest.mark.parametrize("height, width", [(2**32, 2**32), (2**40, 1), (1, 2**40)])
def test_backward_map_size_cannot_overflow_the_check(height, width, device="cpu"):
    """2^32 x 2^32 wraps to 0 in int64: each side is bounded before the product."""
    with pytest.raises(ValueError, match="larger than 2\\^31 cells"):
        _bilinear_backward(device, height, width)
    with pytest.raises(ValueError, match="larger than 2\\^31 cells"):
        _pool_backward(device, height, width)


@pytest.mark.parametrize("fn", FORWARD_FNS, ids=FORWARD_IDS)
def test_zero_channels_give_empty_output_and_gradient(fn, device="cpu"):
    x = torch.zeros(1, 0, 5, 6, device=device, requires_grad=True)
    out = fn(x, torch.tensor(BOX, device=device))
    assert out.shape == (1, 0, 2, 2)
    out.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("fn", FORWARD_FNS, ids=FORWARD_IDS)
def test_boxes_into_an_empty_batch_are_refused(fn, device="cpu"):
    x = torch.zeros(0, 4, 5, 6, device=device)
    with pytest.raises(ValueError, match="batch index"):
        fn(x, torch.tensor(BOX, device=device))
    assert fn(x, torch.zeros(0, 5, device=device)).shape == (0, 4, 2, 2)
