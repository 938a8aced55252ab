"""The one timer the benchmarks share."""

from __future__ import annotations

import statistics
import time

import torch


def median_seconds(fn, repeats: int, device: torch.device, warmup: int = 1) -> float:
    """The median wall time of ``fn()`` over ``repeats`` calls after ``warmup``
    untimed ones; on a GPU each call is bracketed by a synchronisation, so its
    queued kernels are timed too."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
