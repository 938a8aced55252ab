"""CUDA kernels at their edges, each against the CPU kernels: empty maps,
zero boxes or channels, channels-last input, autocast, torch.compile and
opcheck, NMS, the value checks (NaN and too-large boxes, roi_pool's argmax),
the deterministic path's routing, a tensor of more than 2^31 elements.
Skipped without a GPU; tests/test_ops_edges.py holds the CPU side."""

import os
import subprocess
import sys

import pytest
import torch
import torchvision

import ops
import test_ops_edges as edges
from ops._library import ALIGN_LEGACY, kernels
from roi_cases import boxes, feature_map

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

FNS, IDS = edges.FORWARD_FNS, edges.FORWARD_IDS
SIZES, SIZE_IDS = edges.EMPTY_MAPS, ["h0", "w0", "h0w0"]


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("fn", FNS, ids=IDS)
def test_cuda_empty_map_with_boxes_is_refused(fn, size):
    edges.test_empty_map_with_boxes_is_refused(fn, size, device="cuda")


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("fn", FNS, ids=IDS)
def test_cuda_empty_map_without_boxes(fn, size):
    edges.test_empty_map_without_boxes_gives_empty_output_and_gradient(fn, size, device="cuda")


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("max_mode", [False, True], ids=["avg", "max"])
def test_cuda_backward_into_empty_map_is_refused(size, max_mode):
    edges.test_backward_into_empty_map_is_refused(size, ALIGN_LEGACY, max_mode, device="cuda")
    edges.test_backward_without_boxes_into_empty_map_gives_zeros(device="cuda")


def test_cuda_backward_map_size_cannot_overflow_the_check():
    edges.test_backward_map_size_cannot_overflow_the_check(2**32, 2**32, device="cuda")


@pytest.mark.parametrize("fn", FNS, ids=IDS)
def test_cuda_zero_boxes_and_channels(fn):
    edges.test_zero_channels_give_empty_output_and_gradient(fn, device="cuda")
    edges.test_boxes_into_an_empty_batch_are_refused(fn, device="cuda")
    x = torch.rand(2, 3, 6, 7, device="cuda", requires_grad=True)
    out = fn(x, torch.zeros(0, 5, device="cuda"))
    assert out.shape == (0, 3, 2, 2) and out.is_cuda
    out.sum().backward()
    assert torch.count_nonzero(x.grad) == 0


def _forward_backward(fn, x, rois, grad):
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, rois)
    out.backward(grad.to(out.device, out.dtype))
    return out.detach().cpu(), x.grad.cpu()


def _case(seed):
    x = feature_map(batch=2, channels=8, height=15, width=19, dtype=torch.float32, seed=seed)
    rois = boxes(2, 15, 19, 1.0, dtype=torch.float32, seed=seed + 1, per_kind=3)
    grad = torch.randn(rois.shape[0], 8, 2, 2, generator=torch.Generator().manual_seed(seed))
    return x, rois, grad


@pytest.mark.parametrize("fn", FNS, ids=IDS)
def test_cuda_channels_last_matches_cpu(fn):
    x, rois, grad = _case(80)
    expected = _forward_backward(fn, x, rois, grad)
    x_cl = x.cuda().to(memory_format=torch.channels_last)
    assert x_cl.is_contiguous(memory_format=torch.channels_last)
    for got, want in zip(_forward_backward(fn, x_cl, rois.cuda(), grad), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fn", FNS, ids=IDS)
def test_cuda_autocast_runs_in_float32_and_returns_the_input_dtype(fn, dtype):
    """Under autocast the op runs on float32 copies (boxes stay float32) and
    returns the input's dtype: equal to the CPU's float32 result, rounded."""
    x, rois, _ = _case(82)
    x_low = x.to(dtype)
    expected = fn(x_low.float(), rois)
    with torch.autocast("cuda", dtype=dtype):
        got = fn(x_low.cuda(), rois.cuda())
    assert got.dtype == dtype
    # float32 on two devices, then one rounding to dtype: at most one step apart
    step = 1e-3 if dtype == torch.float16 else 8e-3
    torch.testing.assert_close(got.cpu(), expected.to(dtype), rtol=step, atol=step)


@pytest.mark.parametrize("fn", FNS, ids=IDS)
def test_cuda_torch_compile_fullgraph_matches_cpu(fn):
    x, rois, grad = _case(84)
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True)
    expected = _forward_backward(fn, x, rois, grad)
    for got, want in zip(_forward_backward(compiled, x.cuda(), rois.cuda(), grad), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


OPCHECK = [
    ("roi_align", lambda x, r: (x, r, 1.0, 2, 2, 2, False, False)),
    ("roi_align", lambda x, r: (x, r, 1.0, 2, 2, -1, True, True)),
    ("roi_warp", lambda x, r: (x, r, 1.0, 2, 2, 2, True)),
    ("roi_pool", lambda x, r: (x, r, 1.0, 2, 2)),
]


@pytest.mark.parametrize("name, args", OPCHECK, ids=["align", "align_max", "warp", "pool"])
def test_cuda_opcheck(name, args):
    x, rois, _ = _case(86)
    x = x.double().cuda().requires_grad_(True)
    torch.library.opcheck(getattr(kernels(), name).default, args(x, rois.double().cuda()))


def test_cuda_nms_matches_torchvision():
    g = torch.Generator().manual_seed(88)
    xy = torch.rand(300, 2, generator=g) * 100
    b = torch.cat([xy, xy + 5 + torch.rand(300, 2, generator=g) * 40], dim=1)
    scores = torch.rand(300, generator=g)
    for threshold in (0.3, 0.5, 0.7):
        kept = ops.nms(b.cuda(), scores.cuda(), threshold)
        assert kept.is_cuda and kept.dtype == torch.int64
        assert kept.cpu().tolist() == torchvision.ops.nms(b, scores, threshold).tolist()
    assert ops.nms(b[:0].cuda(), scores[:0].cuda(), 0.5).numel() == 0


BAD_BOXES = {
    "nan": ([0.0, float("nan"), 1, 8, 8], -1),
    "inf": ([0.0, 1, 1, float("inf"), 8], 2),
    "too_large": ([0.0, 0, 0, 2e6, 8], -1),
    "batch": ([5.0, 1, 1, 8, 8], 2),
}


@pytest.mark.parametrize("kind", BAD_BOXES)
def test_cuda_sync_checks_name_the_bad_row(kind, monkeypatch):
    """With ROI_OPS_SYNC_CHECKS=1, the GPU check names the row, as the CPU's does."""
    monkeypatch.setenv("ROI_OPS_SYNC_CHECKS", "1")
    row, sampling = BAD_BOXES[kind]
    x = torch.rand(2, 4, 16, 16)
    rois = torch.tensor([[0.0, 1, 1, 8, 8], row])
    with pytest.raises(ValueError) as on_cpu:
        ops.roi_align(x, rois, 7, 1 / 16, sampling)
    with pytest.raises(ValueError) as on_gpu:
        ops.roi_align(x.cuda(), rois.cuda(), 7, 1 / 16, sampling)
    assert str(on_gpu.value).split("\n")[0] == str(on_cpu.value).split("\n")[0]
    assert "rois[1" in str(on_gpu.value)


def _child(tmp_path, body):
    """Runs body (after `import torch, ops`) in a child process on the GPU,
    with the asynchronous checks (the default); returns it finished."""
    script = tmp_path / "child.py"
    script.write_text("import torch, ops\nassert ops.has_cuda_kernels()\n"
                      "print('kernels loaded', flush=True)\n" + body +
                      "\ntorch.cuda.synchronize()\nprint('no assertion', flush=True)\n")
    env = {k: v for k, v in os.environ.items() if k != "ROI_OPS_SYNC_CHECKS"}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=300)


def _assert_stopped_by_the_check(done, message):
    """The child loaded the kernels, then stopped on a device-side assertion
    with the check's message (or, where torch's CUDA _assert_async drops the
    message, its own kernel's assertion), never reaching its end."""
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "kernels loaded" in done.stdout and "no assertion" not in done.stdout, output[-3000:]
    assert "device-side assert" in output, output[-3000:]
    assert message in output or "input[0] != 0" in output, output[-3000:]


ASYNC_MESSAGE = ("rois holds a non-finite value, a batch index that is not an integer in "
                 "[0, 2), or a box too large for adaptive sampling")


def _literal(row: list[float]) -> str:
    """A box row as Python source, nan and inf included (their repr is no literal)."""
    return ", ".join(f"float('{v}')" for v in row)


@pytest.mark.parametrize("kind", BAD_BOXES)
def test_cuda_async_check_stops_the_gpu_with_its_own_message(kind, tmp_path):
    """The device-side assertion fires, with its own message, after the
    kernels were loaded (not a traceback from a missing kernel)."""
    row, sampling = BAD_BOXES[kind]
    done = _child(tmp_path, f"x = torch.rand(2, 4, 16, 16, device='cuda')\n"
                            f"r = torch.tensor([[{_literal(row)}]], device='cuda')\n"
                            f"ops.roi_align(x, r, 7, 1 / 16, {sampling})")
    _assert_stopped_by_the_check(done, ASYNC_MESSAGE)


def test_cuda_async_check_of_roi_pool_argmax(tmp_path):
    done = _child(tmp_path, "g = torch.ones(1, 2, 2, 2, device='cuda')\n"
                            "r = torch.tensor([[0.0, 1, 1, 4, 4]], device='cuda')\n"
                            "a = torch.full((1, 2, 2, 2), 99, dtype=torch.int32, device='cuda')\n"
                            "torch.ops.roi_ops._roi_pool_backward(g, r, a, 1.0, 1, 2, 5, 5, False)")
    _assert_stopped_by_the_check(done, "argmax holds an index that is neither -1")


def test_cuda_sync_check_of_roi_pool_argmax(monkeypatch):
    monkeypatch.setenv("ROI_OPS_SYNC_CHECKS", "1")
    g = torch.ones(1, 2, 2, 2, device="cuda")
    r = torch.tensor([[0.0, 1, 1, 4, 4]], device="cuda")
    a = torch.full((1, 2, 2, 2), 25, dtype=torch.int32, device="cuda")
    with pytest.raises(ValueError, match="argmax holds cell indices from 25 to 25"):
        kernels()._roi_pool_backward(g, r, a, 1.0, 1, 2, 5, 5, False)
    a.fill_(24)  # the last cell of the 5x5 map: accepted
    assert kernels()._roi_pool_backward(g, r, a, 1.0, 1, 2, 5, 5, False).shape == (1, 2, 5, 5)


@pytest.mark.parametrize("fn", FNS, ids=IDS)
def test_cuda_deterministic_backward_takes_the_sorted_path(fn, monkeypatch):
    """The sorted backward synchronises (its segments have a data-dependent
    count), the atomic one does not: sync debug mode "error" tells which ran."""
    monkeypatch.delenv("ROI_OPS_SYNC_CHECKS", raising=False)
    x, rois, grad = _case(90)
    x, rois, grad = x.cuda().requires_grad_(True), rois.cuda(), grad.cuda()
    previous = torch.are_deterministic_algorithms_enabled()
    try:
        for deterministic in (False, True):
            out = fn(x, rois)
            torch.use_deterministic_algorithms(deterministic)
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                if deterministic:
                    with pytest.raises(RuntimeError, match="synchroniz"):
                        out.backward(grad)
                else:
                    out.backward(grad)
            finally:
                torch.cuda.set_sync_debug_mode("default")
            x.grad = None
    finally:
        torch.use_deterministic_algorithms(previous)


@pytest.mark.skipif(torch.cuda.is_available()
                    and torch.cuda.get_device_properties(0).total_memory < 40 * 2**30,
                    reason="needs 40 GiB of GPU memory")
@pytest.mark.parametrize("op", ["roi_align", "roi_pool"])
def test_cuda_input_of_more_than_2_pow_31_elements(op):
    """An input of 2^31 + 2^20 elements (float16, 4 GiB): offsets past 2^31 are
    read and written right, checked on the last channels against the CPU."""
    channels, height, width = 2**11 + 2**0, 1024, 1024
    assert channels * height * width > 2**31
    x = torch.zeros(1, channels, height, width, dtype=torch.float16, device="cuda")
    tail = feature_map(batch=1, channels=2, height=height, width=width, dtype=torch.float32,
                       seed=92).to(torch.float16)
    x[:, -2:] = tail.cuda()
    x.requires_grad_(True)
    rois = torch.tensor([[0.0, 10.5, 20.25, 900.0, 1000.5], [0.0, 1000, 1000, 1023, 1023]])
    fn = (lambda i, r: ops.roi_align(i, r, 7, 1.0, 2)) if op == "roi_align" else \
        (lambda i, r: ops.roi_pool(i, r, 7, 1.0))
    out = fn(x, rois.cuda())
    grad = torch.ones_like(out)
    (g,) = torch.autograd.grad(out, x, grad)
    want_out, want_grad = _forward_backward(fn, tail.float(), rois, torch.ones(2, 2, 7, 7))
    torch.testing.assert_close(out[:, -2:].float().cpu(), want_out, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(g[:, -2:].float().cpu(), want_grad, rtol=2e-3, atol=2e-3)
