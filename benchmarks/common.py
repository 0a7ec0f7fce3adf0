"""Shared by the asv suite: seeded inputs, device checks, synchronisation and ``setup_once``.

Parameters are identical on every machine; a combination that cannot run here (no GPU, backend
unavailable, dtype unsupported, too big for this device) raises ``NotImplementedError`` in setup,
which asv records as n/a. Nothing touches CUDA at import time; torch and lrbench are imported here
so that a forkserver launch (CPU-only runs) pays for them once, not once per parameter.
"""

from __future__ import annotations

import functools
import inspect
import os
import statistics

import numpy as np
import torch

import lrbench

try:  # asv's history runs import older lrbench versions too
    from lrbench.timing import median_time
except ImportError:
    from lrbench.bench import median_time

# Every scan subject. reference is the ground truth, not a subject.
BACKENDS = [
    "cpu-serial",
    "cpu-chunked",
    "torch-loop",
    "torch-assoc",
    "log-space",
    "cuda-serial",
    "cuda-paper",
    "cuda-scan",
    "triton-scan",
]
# Largest T*N per device, the longest T a Python loop over T is given, slow generic scans.
MAX_ELEMENTS = {"cpu": 1 << 24, "cuda": 1 << 30}
MAX_T = {"torch-loop": 1 << 16}
MAX_CPU_ELEMENTS = {"torch-assoc": 1 << 22}


def setup_once(fn):
    """Run an expensive, idempotent setup once per process and parameter tuple (asv_runner >= 0.3
    calls setup before every timed call)."""
    attr = f"_once_{fn.__name__}"

    @functools.wraps(fn)
    def wrapper(self, *params):
        if getattr(self, attr, None) == params:
            return
        fn(self, *params)
        setattr(self, attr, params)

    return wrapper


def cuda_available() -> bool:
    if os.environ.get("LRBENCH_BENCH_NO_GPU") == "1":
        return False
    return torch.cuda.is_available()


def check_device(device: str) -> None:
    """NotImplementedError unless ``device`` can run here and is selected: LRBENCH_BENCH_DEVICES
    (comma-separated) narrows a run, e.g. to ``cuda`` so a GPU window never times the CPU."""
    selected = os.environ.get("LRBENCH_BENCH_DEVICES")
    if selected and device not in selected.split(","):
        raise NotImplementedError(f"this run measures {selected} only (LRBENCH_BENCH_DEVICES)")
    if device == "cuda" and not cuda_available():
        raise NotImplementedError("no CUDA device")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def backend_device(backend: str) -> str:
    """Where a backend's inputs live (triton-scan under the interpreter is not a benchmark)."""
    return "cuda" if backend.startswith(("cuda-", "triton-")) else "cpu"


def require(backend: str, T: int, N: int, dtype: str):
    """The backend's module, or NotImplementedError saying why this combination cannot run here."""
    device = backend_device(backend)
    check_device(device)
    if T * N > MAX_ELEMENTS[device]:
        raise NotImplementedError(f"T*N = {T * N} exceeds this suite's {device} budget")
    if T > MAX_T.get(backend, T) or (
        device == "cpu" and T * N > MAX_CPU_ELEMENTS.get(backend, T * N)
    ):
        raise NotImplementedError(f"{backend} is too slow at T={T}, N={N}")
    try:
        mod = lrbench.registry.get(backend).load()
    except RuntimeError as e:
        raise NotImplementedError(str(e)) from e
    if getattr(torch, dtype) not in mod.DTYPES:
        raise NotImplementedError(f"{backend} does not take {dtype}")
    return mod


def inputs(T: int, N: int, dtype: str, device: str, seed: int = 0, grad: bool = False):
    """Seeded (a, x): the paper's long-memory gates a in [0.999, 1), x ~ N(0, 1), shape (T, N)."""
    rng = np.random.default_rng(seed)
    a = 0.999 + 0.001 * rng.random((T, N), dtype=np.float32)
    x = rng.standard_normal((T, N), dtype=np.float32)
    out = [torch.from_numpy(v).to(device=device, dtype=getattr(torch, dtype)) for v in (a, x)]
    return [t.requires_grad_() for t in out] if grad else out


def scan_call(
    backend: str,
    T: int,
    N: int,
    dtype: str,
    grad: bool = False,
    output: str = "fresh",
    reverse: bool = False,
):
    """(device, call): a warmed-up ``linear_recurrence`` on seeded (T, N) inputs, forward only or,
    with ``grad``, forward then the gradients of a and x. ``output``: "fresh" allocates h per call,
    as a plain call does; "out" writes into one preallocated tensor (``out=``), the kernel's cost.
    NotImplementedError where it cannot run."""
    if backend != "auto":
        require(backend, T, N, dtype)
    if output == "out" and "out" not in inspect.signature(lrbench.linear_recurrence).parameters:
        raise NotImplementedError("this lrbench has no out= (history run of an older commit)")
    device = backend_device(backend)
    a, x = inputs(T, N, dtype, device, grad=grad)
    torch.set_grad_enabled(grad)
    if grad:
        gh = torch.ones_like(x).detach()

        def call():
            h = lrbench.linear_recurrence(a, x, backend=backend, reverse=reverse)
            return torch.autograd.grad(h, (a, x), gh)
    elif output == "out":
        h = torch.empty_like(x)

        def call():
            return lrbench.linear_recurrence(a, x, backend=backend, reverse=reverse, out=h)
    else:

        def call():
            return lrbench.linear_recurrence(a, x, backend=backend, reverse=reverse)

    call()  # compile, page in, warm up
    sync(device)
    return device, call


def cuda_event_seconds(fn) -> float:
    """One call of ``fn`` timed by CUDA events on the current stream (no host overhead)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def median_seconds(fn, device: str) -> float:
    """Median time of ``fn`` after a warm-up (lrbench's timer): CUDA events on the GPU, the wall
    clock on the CPU."""
    if device == "cuda":
        return median_time(fn, timed=cuda_event_seconds)
    return median_time(fn)


def interleaved_medians(calls: dict, rounds: int = 3) -> dict:
    """Each CPU call's median time over ``rounds`` interleaved rounds of ``median_seconds``, so that
    a slow spell of the machine does not fall on one subject alone."""
    times = [{k: median_seconds(c, "cpu") for k, c in calls.items()} for _ in range(rounds)]
    return {k: statistics.median(r[k] for r in times) for k in calls}


# Device buffers at least this big, so a copy or scan streams from HBM, not from the L2 (60 MB on
# an H200).
GPU_MIN_BUFFER = 1 << 30


def copy_seconds(nbytes: int, device: str) -> float:
    """Median time to copy a preallocated ``nbytes`` buffer (so 2 * nbytes moved) on ``device``."""
    from lrbench.timing import copy_seconds as copy  # not in the lrbench of old commits

    return copy(nbytes, device, timer=lambda fn: median_seconds(fn, device))
