"""Every registered operator, called directly through torch.ops.roi_ops with
arguments that disagree with each other, raises a clear error instead of
reading or writing outside a tensor. The backward ops are the ones autograd
calls with sizes it saved; a direct caller can pass anything."""

import math

import pytest
import torch

import ops
from roi_cases import boxes, feature_map

ops.load()
roi_ops = torch.ops.roi_ops

N, C, H, W = 2, 3, 13, 17
PH, PW = 3, 2
SCALE = 1 / 4


def _rois(dtype=torch.float32):
    return boxes(N, H, W, SCALE, dtype=dtype, seed=60, per_kind=1)


def _x(dtype=torch.float32):
    return feature_map(batch=N, channels=C, height=H, width=W, dtype=dtype, seed=61)


def _grad(rois, channels=C, dtype=torch.float32):
    return torch.randn(rois.shape[0], channels, PH, PW, dtype=dtype)


def bilinear_backward(grad=None, rois=None, input=None, spatial_scale=SCALE, batch_size=N,
                      channels=C, height=H, width=W, sampling_ratio=2, box_mode=0,
                      max_mode=False):
    rois = _rois() if rois is None else rois
    grad = _grad(rois) if grad is None else grad
    return roi_ops._bilinear_backward(grad, rois, input, spatial_scale, batch_size, channels,
                                      height, width, sampling_ratio, box_mode, max_mode, False)


def pool_backward(grad=None, rois=None, argmax=None, spatial_scale=SCALE, batch_size=N,
                  channels=C, height=H, width=W):
    if argmax is None:
        _, argmax = roi_ops.roi_pool(_x(), _rois(), SCALE, PH, PW)
    rois = _rois() if rois is None else rois
    grad = _grad(rois) if grad is None else grad
    return roi_ops._roi_pool_backward(grad, rois, argmax, spatial_scale, batch_size, channels,
                                      height, width, False)


def test_consistent_calls_match_autograd():
    """The positive control: with the sizes autograd would pass, the raw
    backward ops give autograd's gradient."""
    rois = _rois()
    for box_mode, max_mode, forward in (
            (0, False, lambda x: ops.roi_align(x, rois, (PH, PW), SCALE, 2)),
            (1, False, lambda x: ops.roi_align(x, rois, (PH, PW), SCALE, 2, True)),
            (1, True, lambda x: ops.roi_align(x, rois, (PH, PW), SCALE, 2, True, "max")),
            (2, False, lambda x: ops.roi_warp(x, rois, (PH, PW), SCALE, 2, "avg")),
            (2, True, lambda x: ops.roi_warp(x, rois, (PH, PW), SCALE, 2, "max"))):
        x = _x().requires_grad_()
        grad = _grad(rois)
        forward(x).backward(grad)
        raw = bilinear_backward(grad=grad, rois=rois, box_mode=box_mode, max_mode=max_mode,
                                input=x.detach() if max_mode else None)
        torch.testing.assert_close(raw, x.grad)
    x = _x().requires_grad_()
    grad = _grad(rois)
    ops.roi_pool(x, rois, (PH, PW), SCALE).backward(grad)
    torch.testing.assert_close(pool_backward(grad=grad, rois=rois), x.grad)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"batch_size": 1}, ValueError, r"rois\[\d+, 0\] \(batch index\) = 1 is out of range for a "
                                    r"batch of 1"),
    ({"channels": 2}, ValueError, r"grad must be \[K, C, PH, PW\] for K = \d+ rois and C = 2"),
    ({"height": -1}, ValueError, "must not be negative.*height=-1"),
    ({"width": -5}, ValueError, "must not be negative.*width=-5"),
    ({"batch_size": -1}, ValueError, "must not be negative"),
    ({"height": 1 << 20, "width": 1 << 12}, ValueError, "larger than 2\\^31 cells"),
    ({"box_mode": 3}, ValueError, "box_mode must be 0 .* got 3"),
    ({"box_mode": -1}, ValueError, "box_mode must be"),
    ({"sampling_ratio": 1 << 40}, ValueError, "sampling_ratio must be at most 1024"),
    ({"spatial_scale": 0.0}, ValueError, "spatial_scale must be a positive finite"),
    ({"spatial_scale": math.nan}, ValueError, "spatial_scale must be a positive finite"),
    ({"max_mode": True}, ValueError, "max mode needs the forward input"),
    ({"max_mode": True, "input": torch.zeros(N, C, H - 1, W)}, ValueError,
     r"input must be the forward input, shaped \[batch_size, channels, height, width\] = "
     r"\[2, 3, 13, 17\], got \[2, 3, 12, 17\]"),
    ({"max_mode": True, "input": torch.zeros(N, C, H, W, dtype=torch.float64)}, TypeError,
     "input must have grad's dtype"),
    ({"rois": _rois(torch.float64)}, TypeError, "rois must be Float for Float grad"),
    ({"rois": _rois()[:, :4]}, ValueError, r"rois must be a \[K, 5\] tensor"),
    ({"grad": torch.zeros(4, C, PH)}, ValueError, "grad must be a 4-D tensor"),
    ({"grad": torch.zeros(3, C, PH, PW, dtype=torch.long)}, TypeError,
     "grad must be a floating point tensor"),
])
def test_bilinear_backward_refuses(kwargs, error, message):
    rois = kwargs.get("rois", _rois())
    if "grad" not in kwargs and rois.dim() == 2 and rois.shape[1] == 5:
        kwargs = {**kwargs, "grad": _grad(rois)}
    with pytest.raises(error, match=message):
        bilinear_backward(**kwargs)


def test_bilinear_backward_refuses_bad_boxes():
    rois = _rois()
    rois[0, 0] = 0.5
    with pytest.raises(ValueError, match=r"rois\[0, 0\] \(batch index\) = 0.5 is not an integer"):
        bilinear_backward(rois=rois)
    rois = _rois()
    rois[1, 2] = math.inf
    with pytest.raises(ValueError, match=r"rois\[1, 2\] = inf is not finite"):
        bilinear_backward(rois=rois)
    grad = _grad(_rois())
    with pytest.raises(ValueError, match="grad must be .* for K = 5 rois"):
        bilinear_backward(grad=grad, rois=_rois()[:5])


def _argmax(value):
    _, argmax = roi_ops.roi_pool(_x(), _rois(), SCALE, PH, PW)
    argmax = argmax.clone()
    argmax[0, 0, 0, 0] = value
    return argmax


@pytest.mark.parametrize("kwargs, error, message", [
    ({"argmax": _argmax(H * W)}, ValueError,
     f"argmax holds cell indices from -?\\d+ to {H * W}; each must be -1 .* 13x17 map"),
    ({"argmax": _argmax(-2)}, ValueError, "argmax holds cell indices from -2"),
    ({"height": 2, "width": 2}, ValueError, "argmax holds cell indices .* of the 2x2 map"),
    ({"argmax": _argmax(0).long()}, TypeError, "argmax must be int32"),
    ({"argmax": _argmax(0)[:, :, :2]}, ValueError, "argmax must be shaped like grad"),
    ({"batch_size": 1}, ValueError, r"\(batch index\) = 1 is out of range for a batch of 1"),
    ({"channels": 4}, ValueError, "grad must be .* and C = 4 channels"),
    ({"height": -3}, ValueError, "must not be negative"),
    ({"spatial_scale": -1.0}, ValueError, "spatial_scale must be a positive finite"),
    ({"rois": _rois(torch.float64)}, TypeError, "rois must be Float for Float grad"),
])
def test_pool_backward_refuses(kwargs, error, message):
    with pytest.raises(error, match=message):
        pool_backward(**kwargs)


@pytest.mark.parametrize("op, args", [
    (roi_ops.roi_align, (SCALE, PH, PW, 1 << 33, False, False)),
    (roi_ops.roi_warp, (SCALE, PH, PW, 5000, False)),
], ids=["roi_align", "roi_warp"])
def test_forward_refuses_huge_sampling_ratio(op, args):
    """A sampling ratio past the int range would wrap around in the kernel."""
    with pytest.raises(ValueError, match="sampling_ratio must be at most 1024"):
        op(_x(), _rois(), *args)


@pytest.mark.parametrize("op, args", [
    (roi_ops.roi_align, (SCALE, 0, PW, 2, False, False)),
    (roi_ops.roi_warp, (SCALE, PH, -1, 2, False)),
    (roi_ops.roi_pool, (SCALE, -2, PW)),
], ids=["roi_align", "roi_warp", "roi_pool"])
def test_forward_refuses_output_size_below_one(op, args):
    with pytest.raises(ValueError, match="output size must be at least 1x1"):
        op(_x(), _rois(), *args)


@pytest.mark.parametrize("op, args", [
    (roi_ops.roi_align, (SCALE, PH, PW, 2, False, False)),
    (roi_ops.roi_warp, (SCALE, PH, PW, 2, False)),
    (roi_ops.roi_pool, (SCALE, PH, PW)),
], ids=["roi_align", "roi_warp", "roi_pool"])
def test_forward_refuses_batch_index_past_the_input(op, args):
    rois = _rois()
    rois[-1, 0] = N
    with pytest.raises(ValueError, match=f"out of range for a batch of {N}"):
        op(_x(), rois, *args)


def test_forward_checks_rois_dtype_and_shape():
    with pytest.raises(TypeError, match="rois must be Float for Float input, got Double"):
        roi_ops.roi_align(_x(), _rois().double(), 1.0, 2, 2, 2, False, False)
    with pytest.raises(ValueError, match="rois must be a \\[K, 5\\] tensor"):
        roi_ops.roi_pool(_x(), _rois()[:, :4], 1.0, 2, 2)
