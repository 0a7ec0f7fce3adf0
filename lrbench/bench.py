"""``lrbench bench``: time the available backends over sequence lengths; print speedups, write CSV.

A stop-gap harness until the asv suite lands: each point is the median of repeated runs after a
warm-up call, with bandwidth (12 bytes per fp32 element: read a and x, write h) stated as a share of
the measured NumPy copy bandwidth of the same machine.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import pandas as pd
import torch

from . import atomic, linear_recurrence, machine, registry
from .scan._flat import Order, flat

SUBJECTS = ["cpu-serial", "cpu-chunked", "torch-loop", "torch-assoc", "log-space"]
# the longest T each subject is timed at (a Python loop over T gets slow)
MAX_T = {"torch-loop": 1 << 14, "torch-assoc": 1 << 18, "log-space": 1 << 20}


def median_time(fn, min_reps=5, min_seconds=0.2, max_reps=50) -> float:
    fn()                                             # warm-up (JIT compile, page faults)
    times, start = [], time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < min_seconds and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


PREALLOCATED = ("cpu-serial", "cpu-chunked")


def _kernel_call(backend: str, a: torch.Tensor, x: torch.Tensor):
    """The Numba engine alone, into a preallocated h: what the call costs without allocating h.

    A fresh output of tens of MB is a fresh mmap, and its page faults can cost more than the scan
    (measured: 45 ms against 8 ms at T = 2^16, N = 256 on the 2-core CI machine)."""
    mod = registry.get(backend).load()
    T, N = a.shape
    h = torch.empty_like(x)
    o, A, X, H = Order(T, N, False), flat(a), flat(x), flat(h)
    return lambda: mod.scan_range(o, (A, 0), (X, 0), (H, 0), T, np.zeros(N, A.dtype))


def copy_bandwidth(nbytes: int) -> float:
    """Bytes read + written per second by ``np.copyto`` of an ``nbytes`` buffer."""
    src = np.ones(max(nbytes // 4, 1), np.float32)
    dst = np.empty_like(src)
    return 2 * src.nbytes / median_time(lambda: np.copyto(dst, src))


def inputs(T: int, N: int, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = (0.999 + 0.001 * torch.rand(T, N, generator=g, dtype=torch.float64)).to(dtype)
    x = torch.randn(T, N, generator=g, dtype=torch.float64).to(dtype)
    return a, x


def grid(quick: bool):
    Ts = [1 << k for k in ((4, 8, 12, 16, 20) if quick else range(4, 23, 2))]
    Ns = (1, 32, 256) if quick else (1, 4, 32, 128, 256, 1024)
    pts = [(T, N) for N in Ns for T in Ts if T * N <= (1 << 24)]
    return pts + [(1 << 22, 1), (1 << 16, 256)]   # the foundation issue's two reported points


def run(quick: bool = True, out: str = "results/cpu/bench.csv") -> pd.DataFrame:
    stamp = machine.info()
    avail = [b for b in SUBJECTS if registry.get(b).availability()[0]]
    rows = []
    for T, N in dict.fromkeys(grid(quick)):
        a, x = inputs(T, N)
        nbytes = 3 * a.nbytes
        bw = copy_bandwidth(2 * a.nbytes)            # copy of a and x: same bytes moved as the scan
        for b in avail:
            if T > MAX_T.get(b, 1 << 30):
                continue
            with torch.no_grad():
                timed = [("forward", median_time(lambda: linear_recurrence(a, x, backend=b)))]
            if b in PREALLOCATED:
                timed.append(("forward-kernel", median_time(_kernel_call(b, a, x))))
            for pass_, t in timed:
                rows.append(dict(backend=b, T=T, N=N, dtype="float32", pass_=pass_, seconds=t,
                                 gbps=nbytes / t / 1e9, copy_gbps=bw / 1e9,
                                 pct_copy=100 * nbytes / t / bw, **stamp))
                print(f"{b:12s} {pass_:14s} T={T:8d} N={N:5d} {t * 1e3:10.3f} ms "
                      f"{nbytes / t / 1e9:7.2f} GB/s ({100 * nbytes / t / bw:5.1f}% of copy)", flush=True)
    df = pd.DataFrame(rows).rename(columns={"pass_": "pass"})
    atomic.write_csv(df, out)
    return df


def speedup_table(df: pd.DataFrame, base: str = "cpu-serial") -> pd.DataFrame:
    """Speedup of every backend over ``base`` (time of base / time of backend), per (N, T)."""
    t = df[df["pass"] == "forward"].pivot_table(index=["N", "T"], columns="backend", values="seconds")
    return t.rdiv(t[base], axis=0) if base in t else t
