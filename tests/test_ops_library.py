"""The ops as PyTorch operators: opcheck, torch.compile, autocast, reduced
precision, the deterministic backward, the nn.Modules."""

import pytest
import torch

import ops
from roi_cases import boxes, feature_map

ops.load()  # torch.ops.roi_ops is there once the kernels are loaded
roi_ops = torch.ops.roi_ops


def _rois(dtype=torch.float32, scale=1 / 4):
    return boxes(2, 13, 17, scale, dtype=dtype, seed=50, per_kind=2)


def _x(dtype=torch.float32, requires_grad=True):
    return feature_map(batch=2, channels=3, dtype=dtype, seed=51).requires_grad_(requires_grad)


@pytest.mark.parametrize("args", [
    (roi_ops.roi_align.default, (1 / 4, 3, 2, 2, False, False)),
    (roi_ops.roi_align.default, (1 / 4, 3, 2, -1, True, False)),
    (roi_ops.roi_align.default, (1 / 4, 3, 2, 2, True, True)),
    (roi_ops.roi_warp.default, (1 / 4, 3, 2, 2, True)),
    (roi_ops.roi_warp.default, (1 / 4, 3, 2, -1, False)),
    (roi_ops.roi_pool.default, (1 / 4, 3, 2)),
], ids=["align", "align_aligned", "align_max", "warp_max", "warp_avg", "pool"])
def test_opcheck(args):
    op, rest = args
    torch.library.opcheck(op, (_x(), _rois(), *rest))


def test_opcheck_backward_ops():
    x, rois = _x(requires_grad=False), _rois()
    grad = torch.randn(rois.shape[0], 3, 3, 2)
    torch.library.opcheck(roi_ops._bilinear_backward.default,
                          (grad, rois, x, 1 / 4, 2, 3, 13, 17, 2, 0, True, False))
    _, argmax = roi_ops.roi_pool(x, rois, 1 / 4, 3, 2)
    torch.library.opcheck(roi_ops._roi_pool_backward.default,
                          (grad, rois, argmax, 1 / 4, 2, 3, 13, 17, False))


def test_torch_compile_fullgraph():
    torch._dynamo.reset()

    def heads(x, rois):
        a = ops.roi_align(x, rois, 7, 1 / 4, 2)
        w = ops.roi_warp(x, rois, 7, 1 / 4, 2, "avg")
        p = ops.roi_pool(x, rois, 7, 1 / 4)
        return (a * 2 + w - p).sum()

    compiled = torch.compile(heads, fullgraph=True)
    x1, x2 = _x(), _x()
    rois = _rois()
    expected = heads(x1, rois)
    expected.backward()
    actual = compiled(x2, rois)
    actual.backward()
    torch.testing.assert_close(actual, expected)
    torch.testing.assert_close(x2.grad, x1.grad)


@pytest.mark.parametrize("op", ["roi_align", "roi_warp", "roi_pool"])
def test_autocast_runs_in_float32_and_returns_input_dtype(op):
    fn = getattr(ops, op)
    x = _x(requires_grad=False)
    expected = fn(x, _rois(), 3, 1 / 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fn(x.to(torch.bfloat16), _rois(), 3, 1 / 4)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("op, kwargs", [
    ("roi_align", {}), ("roi_align", {"mode": "max", "aligned": True}),
    ("roi_warp", {}), ("roi_pool", {}),
])
def test_reduced_precision_matches_float32(op, kwargs, dtype):
    """float16/bfloat16 read and write in their type and accumulate in float32."""
    fn = getattr(ops, op)
    x32 = _x().detach()
    x_low = x32.to(dtype)
    x32 = x_low.float().requires_grad_(True)  # same values, so only rounding differs
    x_low.requires_grad_(True)
    out32 = fn(x32, _rois(), 4, 1 / 4, **kwargs)
    out_low = fn(x_low, _rois(), 4, 1 / 4, **kwargs)
    assert out_low.dtype == dtype
    tol = dict(rtol=1e-2, atol=1e-2) if dtype == torch.float16 else dict(rtol=4e-2, atol=4e-2)
    torch.testing.assert_close(out_low.float(), out32, **tol)
    grad = torch.randn(out32.shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    out32.backward(grad.float())
    out_low.backward(grad)
    assert x_low.grad.dtype == dtype
    torch.testing.assert_close(x_low.grad.float(), x32.grad, **tol)


@pytest.mark.parametrize("box_mode", [0, 1, 2])
@pytest.mark.parametrize("max_mode", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("scale", [1.0, 1 / 4, 1 / 32])
def test_deterministic_backward_equals_scatter(scale, sampling_ratio, max_mode, box_mode):
    """The sorted backward that CUDA uses under deterministic mode, run on CPU."""
    x = feature_map(batch=2, channels=3, dtype=torch.float64, seed=52)
    rois = boxes(2, 13, 17, scale, seed=53, per_kind=3)
    grad = torch.randn(rois.shape[0], 3, 5, 4, dtype=torch.float64)
    args = (grad, rois, x, scale, 2, 3, 13, 17, sampling_ratio, box_mode, max_mode)
    torch.testing.assert_close(roi_ops._bilinear_backward(*args, True),
                               roi_ops._bilinear_backward(*args, False), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("scale", [1.0, 1 / 4, 1 / 32])
@pytest.mark.parametrize("size", [(5, 4), (14, 14)])
def test_deterministic_roi_pool_backward_equals_scatter(size, scale):
    x = feature_map(batch=2, channels=3, dtype=torch.float64, seed=54)
    rois = boxes(2, 13, 17, scale, seed=55, per_kind=3)
    _, argmax = roi_ops.roi_pool(x, rois, scale, *size)
    grad = torch.randn(rois.shape[0], 3, *size, dtype=torch.float64)
    args = (grad, rois, argmax, scale, 2, 3, 13, 17)
    torch.testing.assert_close(roi_ops._roi_pool_backward(*args, True),
                               roi_ops._roi_pool_backward(*args, False), rtol=1e-9, atol=1e-9)


# The sorted deterministic backward on many overlapping boxes: 200 of every
# kind (roi_cases.boxes: partly and wholly outside, zero-size, inverted, huge)
# on a 2x8x40x50 map at scale 1/4; every cell is read by many boxes.
MANY_BOXES = {
    "align_avg": (2, 1, False), "align_adaptive": (-1, 1, False), "align_max": (-1, 0, True),
    "warp_avg": (-1, 2, False), "warp_max": (2, 2, True), "pool": None,
}  # (sampling_ratio, box_mode, max_mode)


def _many_boxes_backward(case, dtype, deterministic, seed=57):
    scale, n, c, h, w = 1 / 4, 2, 8, 40, 50
    x = feature_map(batch=n, channels=c, height=h, width=w, dtype=dtype, seed=seed)
    rois = boxes(n, h, w, scale, dtype=torch.float64 if dtype == torch.float64 else torch.float32,
                 seed=seed + 1, per_kind=25)
    grad = torch.randn(rois.shape[0], c, 7, 6, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64).to(dtype)
    if MANY_BOXES[case] is None:
        _, argmax = roi_ops.roi_pool(x, rois, scale, 7, 6)
        return roi_ops._roi_pool_backward(grad, rois, argmax, scale, n, c, h, w, deterministic)
    sampling_ratio, box_mode, max_mode = MANY_BOXES[case]
    return roi_ops._bilinear_backward(grad, rois, x, scale, n, c, h, w, sampling_ratio, box_mode,
                                      max_mode, deterministic)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", list(MANY_BOXES))
def test_deterministic_backward_is_bitwise_repeatable_on_any_thread_count(case, dtype):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _many_boxes_backward(case, dtype, True)
        torch.set_num_threads(2)
        first = _many_boxes_backward(case, dtype, True)
        again = _many_boxes_backward(case, dtype, True)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(first, one, rtol=0, atol=0)
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    tol = {torch.float64: 1e-9, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 4e-2}
    torch.testing.assert_close(first, _many_boxes_backward(case, dtype, False),
                               rtol=tol[dtype], atol=tol[dtype])


@pytest.mark.parametrize("deterministic", [True, False])
def test_backward_without_boxes_or_samples_is_zero(deterministic):
    x = feature_map(batch=2, channels=3, dtype=torch.float64, seed=58)
    no_boxes = torch.zeros(0, 5, dtype=torch.float64)
    # Zero-size boxes have no samples under aligned=True with adaptive
    # sampling (roi_pool still reads their one cell); boxes far outside the
    # map only read outside it.
    empty = torch.tensor([[0, 8.0, 8, 8, 8], [1, 20, 4, 20, 30]], dtype=torch.float64)
    outside = torch.tensor([[0, 500.0, 500, 600, 600], [1, -90, -90, -60, -70]],
                           dtype=torch.float64)
    for rois, sampling_ratio in [(no_boxes, 2), (empty, -1), (outside, 2)]:
        grad = torch.randn(rois.shape[0], 3, 5, 4, dtype=torch.float64)
        for max_mode in (False, True):
            out = roi_ops._bilinear_backward(grad, rois, x, 1 / 4, 2, 3, 13, 17, sampling_ratio,
                                             1, max_mode, deterministic)
            assert out.shape == x.shape and not out.any()
        if rois is empty:
            continue
        _, argmax = roi_ops.roi_pool(x, rois, 1 / 4, 5, 4)
        out = roi_ops._roi_pool_backward(grad, rois, argmax, 1 / 4, 2, 3, 13, 17, deterministic)
        assert out.shape == x.shape and not out.any()


def test_results_do_not_depend_on_thread_count():
    """The CPU kernels split work across threads without changing a bit."""
    x = feature_map(batch=2, channels=64, height=40, width=50, dtype=torch.float32)
    rois = boxes(2, 40, 50, 1 / 16, dtype=torch.float32, seed=56)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.roi_align(x, rois, 7, 1 / 16, 2)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(ops.roi_align(x, rois, 7, 1 / 16, 2), one, rtol=0, atol=0)


def test_module_repr_and_forward():
    align = ops.RoIAlign((7, 7), 1 / 16, 2, aligned=True, mode="max")
    assert repr(align) == ("RoIAlign(output_size=(7, 7), spatial_scale=0.0625, "
                           "sampling_ratio=2, aligned=True, mode='max')")
    assert repr(ops.RoIPool(14, 0.25)) == "RoIPool(output_size=(14, 14), spatial_scale=0.25)"
    assert repr(ops.RoIWarp(7, 0.125)) == ("RoIWarp(output_size=(7, 7), spatial_scale=0.125, "
                                           "sampling_ratio=-1, mode='max')")
    x, rois = _x(requires_grad=False), _rois(scale=1 / 16)
    torch.testing.assert_close(align(x, rois), ops.roi_align(x, rois, 7, 1 / 16, 2, True, "max"))
