"""The timing helpers every lrbench measurement shares (the asv suite, perfcheck, seed 000).

``median_time``: wall-clock median after a warm-up call (CPU; a GPU caller synchronises inside
``fn`` or uses CUDA events). ``copy_seconds``: a preallocated copy of the same bytes on the same
device, the bandwidth yardstick. ``inputs``: the seeded long-memory gates and inputs.
"""

from __future__ import annotations

import statistics
import time

import torch


def wall_seconds(fn) -> float:
    """Wall-clock seconds of one call of ``fn``."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_time(
    fn, min_reps: int = 5, min_seconds: float = 0.2, max_reps: int = 50, timed=wall_seconds
) -> float:
    """Median seconds of ``fn()`` after one warm-up call (JIT compile, page faults); ``timed``
    times one call (the wall clock, or CUDA events on the GPU: benchmarks/common.py)."""
    fn()
    times, start = [], time.perf_counter()
    while len(times) < min_reps or (
        time.perf_counter() - start < min_seconds and len(times) < max_reps
    ):
        times.append(timed(fn))
    return statistics.median(times)


def copy_seconds(nbytes: int, device: str = "cpu", timer=median_time) -> float:
    """Median time to copy a preallocated ``nbytes`` buffer (so 2 * nbytes moved) on ``device``."""
    src = torch.ones(max(nbytes // 4, 1), dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    return timer(lambda: dst.copy_(src))


def inputs(T: int, N: int, dtype=torch.float32, device: str = "cpu", seed: int = 0):
    """Seeded (a, x) of shape (T, N): the paper's long-memory gates a in [0.999, 1), x ~ N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    a = 0.999 + 0.001 * torch.rand(T, N, generator=g)
    x = torch.randn(T, N, generator=g)
    return a.to(device, dtype), x.to(device, dtype)
