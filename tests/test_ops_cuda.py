"""CUDA kernels: parity with the CPU kernels and torchvision, reduced
precision, the deterministic backward. Skipped without a GPU."""

import pytest
import torch
import torchvision

import ops
from roi_cases import boxes, feature_map

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CASES = [
    ("roi_align", dict(sampling_ratio=2)),
    ("roi_align", dict(sampling_ratio=-1, aligned=True)),
    ("roi_align", dict(sampling_ratio=0, mode="max")),
    ("roi_warp", dict(sampling_ratio=2, mode="avg")),
    ("roi_warp", dict(sampling_ratio=-1, mode="max")),
    ("roi_pool", dict()),
]
IDS = ["align", "align_aligned", "align_max", "warp_avg", "warp_max", "pool"]


def _run(fn, x, rois, kwargs, grad):
    x = x.clone().requires_grad_(True)
    out = fn(x, rois, (7, 5), 1 / 8, **kwargs)
    out.backward(grad.to(out.device, out.dtype))
    return out.detach(), x.grad


def _case(dtype, seed=60):
    x = feature_map(batch=3, channels=32, height=21, width=26, dtype=dtype, seed=seed)
    rois = boxes(3, 21, 26, 1 / 8, dtype=dtype if dtype == torch.float64 else torch.float32,
                 seed=seed + 1)
    grad = torch.randn(rois.shape[0], 32, 7, 5, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)
    return x, rois, grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("op, kwargs", CASES, ids=IDS)
def test_cuda_matches_cpu(op, kwargs, dtype):
    fn = getattr(ops, op)
    x, rois, grad = _case(dtype)
    cpu_out, cpu_grad = _run(fn, x, rois, kwargs, grad)
    gpu_out, gpu_grad = _run(fn, x.cuda(), rois.cuda(), kwargs, grad)
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gpu_out.cpu(), cpu_out, **tol)
    torch.testing.assert_close(gpu_grad.cpu(), cpu_grad, **tol)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
def test_cuda_matches_torchvision(sampling_ratio, aligned):
    x, rois, grad = _case(torch.float32, seed=62)
    x, rois = x.cuda(), rois.cuda()
    ours = _run(lambda i, r, s, sc, **k: ops.roi_align(i, r, s, sc, sampling_ratio, aligned),
                x, rois, {}, grad)
    theirs = _run(lambda i, r, s, sc, **k: torchvision.ops.roi_align(i, r, s, sc, sampling_ratio,
                                                                     aligned), x, rois, {}, grad)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    ours = _run(lambda i, r, s, sc, **k: ops.roi_pool(i, r, s, sc), x, rois, {}, grad)
    theirs = _run(lambda i, r, s, sc, **k: torchvision.ops.roi_pool(i, r, s, sc), x, rois, {}, grad)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("op, kwargs", CASES, ids=IDS)
def test_cuda_reduced_precision_matches_float32(op, kwargs, dtype):
    fn = getattr(ops, op)
    x, rois, grad = _case(torch.float32, seed=64)
    x_low = x.to(dtype).cuda()
    out32, grad32 = _run(fn, x_low.float(), rois.cuda(), kwargs, grad)
    out_low, grad_low = _run(fn, x_low, rois.cuda(), kwargs, grad.to(dtype))
    assert out_low.dtype == dtype and grad_low.dtype == dtype
    tol = dict(rtol=1e-2, atol=1e-2) if dtype == torch.float16 else dict(rtol=4e-2, atol=4e-2)
    torch.testing.assert_close(out_low.float(), out32, **tol)
    torch.testing.assert_close(grad_low.float(), grad32, **tol)


@pytest.mark.parametrize("op, kwargs", CASES, ids=IDS)
def test_deterministic_backward_is_bitwise_repeatable(op, kwargs):
    fn = getattr(ops, op)
    x, rois, grad = _case(torch.float32, seed=66)
    x, rois = x.cuda(), rois.cuda()
    default = _run(fn, x, rois, kwargs, grad)[1]
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        first = _run(fn, x, rois, kwargs, grad)[1]
        for _ in range(3):
            assert torch.equal(_run(fn, x, rois, kwargs, grad)[1], first)
    finally:
        torch.use_deterministic_algorithms(previous)
    torch.testing.assert_close(first, default, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op, kwargs", CASES, ids=IDS)
def test_deterministic_backward_matches_atomic_on_many_boxes(op, kwargs):
    """512 boxes of every kind on a 2x64x100x136 map: the sorted backward
    (run under deterministic mode, so the at:: sort and segment calls it makes
    must not raise there) is repeatable and agrees with the atomic backward
    and with the CPU's."""
    fn = getattr(ops, op)
    x = feature_map(batch=2, channels=64, height=100, width=136, dtype=torch.float64, seed=72)
    rois = boxes(2, 100, 136, 1 / 8, seed=73, per_kind=64)
    grad = torch.randn(rois.shape[0], 64, 7, 5, generator=torch.Generator().manual_seed(74),
                       dtype=torch.float64)
    atomic = _run(fn, x.cuda(), rois.cuda(), kwargs, grad)[1]
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        first = _run(fn, x.cuda(), rois.cuda(), kwargs, grad)[1]
        assert torch.equal(_run(fn, x.cuda(), rois.cuda(), kwargs, grad)[1], first)
    finally:
        torch.use_deterministic_algorithms(previous)
    torch.testing.assert_close(first, atomic, rtol=1e-9, atol=1e-9)
    cpu = _run(fn, x, rois, kwargs, grad)[1]
    torch.testing.assert_close(first.cpu(), cpu, rtol=1e-9, atol=1e-9)


def _on_side_stream(device):
    """roi_align forward and backward queued on a side stream of device, whose
    input is written there behind torch.cuda._sleep: a kernel launched on
    another stream would read the input before it is written."""
    x, rois, grad = _case(torch.float32, seed=68)
    expected = _run(ops.roi_align, x, rois, dict(sampling_ratio=2), grad)
    with torch.cuda.device(device):
        stream = torch.cuda.Stream(device)
        source = x.to(device)
        x_gpu = torch.full_like(source, float("nan"))  # what a kernel on another stream reads
        rois_gpu, grad_gpu = rois.to(device), grad.float().to(device)
        torch.cuda.synchronize(device)
        with torch.cuda.stream(stream):
            torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU time before the input is written
            x_gpu.copy_(source)
            leaf = x_gpu.requires_grad_(True)
            out = ops.roi_align(leaf, rois_gpu, (7, 5), 1 / 8, 2)
            out.backward(grad_gpu)
        stream.synchronize()
    assert out.device == torch.device(device)
    torch.testing.assert_close(out.detach().cpu(), expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(leaf.grad.cpu(), expected[1], rtol=1e-5, atol=1e-5)


def test_runs_on_the_current_stream():
    _on_side_stream("cuda:0")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second GPU")
def test_runs_on_a_second_device():
    _on_side_stream("cuda:1")


def test_cuda_bad_batch_index_is_reported(monkeypatch):
    """With ROI_OPS_SYNC_CHECKS=1 the GPU check waits for its answer and names the row."""
    monkeypatch.setenv("ROI_OPS_SYNC_CHECKS", "1")
    x, rois, _ = _case(torch.float32, seed=70)
    rois[3, 0] = 7
    with pytest.raises(ValueError, match=r"rois\[3, 0\] \(batch index\) = 7 is out of range"):
        ops.roi_align(x.cuda(), rois.cuda(), 7, 1 / 8)


@pytest.mark.parametrize("op, kwargs", CASES, ids=IDS)
def test_no_host_synchronisation(op, kwargs, monkeypatch):
    """By default the value checks are device-side assertions: a forward and
    backward on the GPU never wait for it (sync debug mode "error" raises on
    any synchronising call)."""
    monkeypatch.delenv("ROI_OPS_SYNC_CHECKS", raising=False)
    x, rois, grad = _case(torch.float32, seed=72)
    x, rois, grad = x.cuda().requires_grad_(True), rois.cuda(), grad.float().cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = getattr(ops, op)(x, rois, (7, 5), 1 / 8, **kwargs)
        out.backward(grad)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert torch.isfinite(x.grad).all()


def test_bad_batch_index_stops_the_gpu_without_a_sync(tmp_path):
    """The asynchronous check: the bad box is never read; the process's CUDA
    context stops with a device-side assertion (so it runs in a child process)."""
    import subprocess
    import sys
    script = tmp_path / "bad.py"
    script.write_text(
        "import torch, ops\n"
        "assert ops.has_cuda_kernels()\n"
        "print('kernels loaded', flush=True)\n"
        "x = torch.rand(2, 4, 16, 16, device='cuda')\n"
        "rois = torch.tensor([[5.0, 1, 1, 8, 8]], device='cuda')\n"
        "ops.roi_align(x, rois, 7, 1.0)\n"
        "torch.cuda.synchronize()\n"
        "print('no assertion', flush=True)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "ROI_OPS_SYNC_CHECKS"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode != 0
    assert "kernels loaded" in done.stdout, done.stderr[-2000:]  # not a missing kernel
    assert "no assertion" not in done.stdout
    output = done.stdout + done.stderr
    assert "device-side assert" in output, output[-2000:]
    # the check's own message, or (where torch's CUDA _assert_async drops the
    # message) the assertion of its kernel: either way this check's assertion
    assert ("roi_align: rois holds a non-finite value, a batch index that is not an integer "
            "in [0, 2)") in output or "input[0] != 0" in output, output[-2000:]
