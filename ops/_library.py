"""The operators, loaded on first use: ``kernels()`` loads (compiling them
the first time on this machine) the C++/CUDA kernels and registers what
torch.library adds to them: fake (meta) kernels, so the ops trace under
torch.compile and torch.export, and autograd formulas.

Gradients flow to the feature map only, never to the box coordinates.
"""

from __future__ import annotations

import threading

import torch

from . import _build

_LOCK = threading.Lock()
_ready = False
_FAKES: list = []  # (op name, fake kernel), registered with the kernels

# Box placement codes of _bilinear_backward (see csrc/roi_geometry.h).
ALIGN_LEGACY, ALIGN_HALF_PIXEL, WARP = 0, 1, 2


def _deterministic(t: torch.Tensor) -> bool:
    # CPU backward kernels never race; the CUDA ones gather instead of using
    # atomics when determinism is asked for.
    return t.is_cuda and torch.are_deterministic_algorithms_enabled()


def _fake(name):
    def record(fn):
        _FAKES.append((name, fn))
        return fn
    return record


def _output_like(input, rois, pooled_height, pooled_width):
    torch._check(input.dim() == 4, lambda: "input must be 4-D")
    torch._check(rois.dim() == 2 and rois.shape[1] == 5, lambda: "rois must be [K, 5]")
    return input.new_empty((rois.shape[0], input.shape[1], pooled_height, pooled_width))


@_fake("roi_ops::roi_align")
def _roi_align_fake(input, rois, spatial_scale, pooled_height, pooled_width,
                    sampling_ratio, aligned, max_mode):
    return _output_like(input, rois, pooled_height, pooled_width)


@_fake("roi_ops::roi_warp")
def _roi_warp_fake(input, rois, spatial_scale, pooled_height, pooled_width,
                   sampling_ratio, max_mode):
    return _output_like(input, rois, pooled_height, pooled_width)


@_fake("roi_ops::roi_pool")
def _roi_pool_fake(input, rois, spatial_scale, pooled_height, pooled_width):
    output = _output_like(input, rois, pooled_height, pooled_width)
    return output, torch.empty_like(output, dtype=torch.int32)


@_fake("roi_ops::nms")
def _nms_fake(boxes, scores, iou_threshold):
    kept = torch.library.get_ctx().new_dynamic_size()  # data-dependent: how many survive
    torch._check(kept <= boxes.shape[0])
    return boxes.new_empty((kept,), dtype=torch.int64)


@_fake("roi_ops::_bilinear_backward")
def _bilinear_backward_fake(grad, rois, input, spatial_scale, batch_size, channels,
                            height, width, sampling_ratio, box_mode, max_mode,
                            deterministic):
    return grad.new_empty((batch_size, channels, height, width))


@_fake("roi_ops::_roi_pool_backward")
def _roi_pool_backward_fake(grad, rois, argmax, spatial_scale, batch_size, channels,
                            height, width, deterministic):
    return grad.new_empty((batch_size, channels, height, width))


def _save_bilinear(ctx, input, rois, spatial_scale, sampling_ratio, box_mode, max_mode):
    ctx.save_for_backward(rois, input if max_mode else None)
    ctx.input_shape = input.shape
    ctx.args = (spatial_scale, sampling_ratio, box_mode, max_mode)


def _bilinear_grad(ctx, grad):
    rois, input = ctx.saved_tensors
    spatial_scale, sampling_ratio, box_mode, max_mode = ctx.args
    n, c, h, w = ctx.input_shape
    grad_input = kernels()._bilinear_backward(
        grad, rois, input, spatial_scale, n, c, h, w, sampling_ratio, box_mode,
        max_mode, _deterministic(grad))
    return grad_input


def _roi_align_setup(ctx, inputs, output):
    input, rois, spatial_scale, _, _, sampling_ratio, aligned, max_mode = inputs
    box_mode = ALIGN_HALF_PIXEL if aligned else ALIGN_LEGACY
    _save_bilinear(ctx, input, rois, spatial_scale, sampling_ratio, box_mode, max_mode)


def _roi_align_backward(ctx, grad):
    return _bilinear_grad(ctx, grad), None, None, None, None, None, None, None


def _roi_warp_setup(ctx, inputs, output):
    input, rois, spatial_scale, _, _, sampling_ratio, max_mode = inputs
    _save_bilinear(ctx, input, rois, spatial_scale, sampling_ratio, WARP, max_mode)


def _roi_warp_backward(ctx, grad):
    return _bilinear_grad(ctx, grad), None, None, None, None, None, None


def _roi_pool_setup(ctx, inputs, output):
    input, rois, spatial_scale, _, _ = inputs
    _, argmax = output
    ctx.mark_non_differentiable(argmax)
    # argmax has no gradient; without this autograd would fill a zero tensor
    # the size of the output for it on every backward.
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(rois, argmax)
    ctx.input_shape = input.shape
    ctx.spatial_scale = spatial_scale


def _roi_pool_backward(ctx, grad, _grad_argmax):
    if grad is None:
        return None, None, None, None, None
    rois, argmax = ctx.saved_tensors
    n, c, h, w = ctx.input_shape
    grad_input = kernels()._roi_pool_backward(
        grad, rois, argmax, ctx.spatial_scale, n, c, h, w, _deterministic(grad))
    return grad_input, None, None, None, None


def _register() -> None:
    for name, fn in _FAKES:
        torch.library.register_fake(name, fn)
    torch.library.register_autograd(
        "roi_ops::roi_align", _roi_align_backward, setup_context=_roi_align_setup)
    torch.library.register_autograd(
        "roi_ops::roi_warp", _roi_warp_backward, setup_context=_roi_warp_setup)
    torch.library.register_autograd(
        "roi_ops::roi_pool", _roi_pool_backward, setup_context=_roi_pool_setup)


def kernels():
    """torch.ops.roi_ops, with the kernels loaded and registered (once per process)."""
    global _ready
    if not _ready:
        with _LOCK:
            if not _ready:
                _build.load()
                _register()
                _ready = True
    return torch.ops.roi_ops


def has_cuda_kernels() -> bool:
    """Whether the loaded library includes the CUDA kernels: built with them,
    and every operator has a kernel for the CUDA dispatch key (no GPU needed)."""
    kernels()
    return bool(_build.load()) and all(
        torch._C._dispatch_has_kernel_for_dispatch_key(f"roi_ops::{name}", "CUDA")
        for name in ("roi_align", "roi_warp", "roi_pool", "_bilinear_backward",
                     "_roi_pool_backward", "nms"))

