"""The CPU kernel ladder: each variant of the Numba CPU scan run alone, as llm.c's dev/cuda runs
its kernels, so that the measurements behind the kernels' design are regenerated, not quoted.

Every point scans fp32 time-major (T, N) buffers of T * N = 2^22 elements (16 MiB an operand)
into a preallocated h, below ``linear_recurrence`` (no checks, no autograd, no output
allocation); ``copy`` copies x into h on one core (NumPy), the bandwidth a one-pass kernel can
reach. Each variant's output is checked against cpu-serial's before it is timed. Variants:

* ``rows``: the row kernel (``rows.scan``) on one core, carries in memory (N = 1: in a register);
* ``chains``: all N <= 8 chains in registers (``chains.scan``), one core;
* ``chains-blocked``: groups of 8 channels taking turns over 4 KiB blocks (``chains.scan_blocked``,
  N a multiple of 8 and >= 16), one core;
* ``serial``: what cpu-serial runs (one of the three above, ``serial.BLOCKED`` and N decide);
* ``three-pass`` and ``pipeline``: cpu-chunked's two schedules on torch's thread count.

At 16 MiB an operand the operands may sit partly in a large last-level cache (the VM reports a
shared 480 MiB L3): the ladder compares kernels with each other and with a copy of the same size,
not with main-memory bandwidth (``lrbench.hwfacts`` measures that on 64 MiB).

``lrbench report`` turns the rows into ``results/tables/kernels_<machine>.md`` (GB/s at 12 bytes
an element, and as a fraction of the copy's). Times, lower is better; ``version`` is set by hand.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

import lrbench
from lrbench.scan.cpu import chains, chunked, rows, serial
from lrbench.scan.cpu.flat import Order

from .common import inputs, setup_once

ELEMENTS = 1 << 22
LADDER_N = [1, 2, 4, 8, 16, 64, 256]
VARIANTS = ["copy", "rows", "chains", "chains-blocked", "serial", "three-pass", "pipeline"]
ONE_CORE = {"rows": rows.scan, "chains": chains.scan, "chains-blocked": chains.scan_blocked}


def applies(variant: str, N: int, direction: str) -> str | None:
    """Why ``variant`` does not run at (N, direction), or None when it does."""
    if variant == "chains" and N > chains.W:
        return f"the chain kernel holds at most {chains.W} channels"
    if variant == "chains-blocked" and (N % chains.W or N < 2 * chains.W):
        return f"the blocked kernel takes multiples of {chains.W} channels from {2 * chains.W}"
    if variant == "pipeline" and not chunked.pipelined(N):
        return "the pipeline reduces whole groups of 8 channels (N a multiple of 8, or >= 16)"
    if variant in ("copy", "three-pass", "pipeline") and direction == "reverse":
        return "timed forward only"
    return None


def ladder_call(variant: str, N: int, direction: str = "forward", head: float = chunked.HEAD):
    """(call, h): a call that runs ``variant`` once over seeded inputs into h (a torch tensor)."""
    why = applies(variant, N, direction)
    if why:
        raise NotImplementedError(f"{variant} at N = {N}, {direction}: {why}")
    T = ELEMENTS // N
    a, x = inputs(T, N, "float32", "cpu")
    h = torch.zeros(T, N)
    A, X, H = (t.numpy().reshape(-1) for t in (a, x, h))
    o = Order(T, N, direction == "reverse")
    c = np.zeros(N, np.float32)
    if variant == "copy":
        return partial(np.copyto, H, X), h
    if variant in ONE_CORE:
        kernel, b = ONE_CORE[variant], o.base(0)
        run = partial(kernel, A, b, X, b, H, b, o.rs, T, N, c)
    elif variant == "serial":
        run = partial(serial.scan_range, o, (A, 0), (X, 0), (H, 0), T, c)
    else:
        step = chunked._chains if variant == "three-pass" else partial(chunked._pipeline, head=head)
        run = partial(chunked.scan_range, o, (A, 0), (X, 0), (H, 0), T, c, step=step)

    def call():  # every call from h0 = 0 (the kernels leave the last state in c)
        c[:] = 0
        run()

    return call, h


def check(variant, call, h, N, direction):
    """Runs ``call`` once (compiling it) and compares h with cpu-serial's (fp32, normwise)."""
    call()
    if variant == "copy":
        return
    a, x = inputs(ELEMENTS // N, N, "float32", "cpu")
    ref = lrbench.linear_recurrence(a, x, backend="cpu-serial", reverse=direction == "reverse")
    err = float((h - ref).abs().max())
    if not err <= 1e-6 + 2e-5 * float(ref.abs().max()):
        raise AssertionError(f"{variant} at N = {N}, {direction}: max abs error {err:.3g}")


class Ladder:
    version = "1"
    params = (VARIANTS, LADDER_N, ["forward", "reverse"])
    param_names = ["variant", "N", "direction"]
    timeout = 300

    @setup_once
    def setup(self, variant, N, direction):
        self.call, h = ladder_call(variant, N, direction)
        check(variant, self.call, h, N, direction)

    def time_kernel(self, variant, N, direction):
        self.call()


class PipelineHead:
    """The pipeline's chunk 0 length over the others' (``chunked.HEAD``; theory says 2/3)."""

    version = "1"
    params = ([8, 16, 256], [0.4, 0.5, 0.6, 0.667, 0.8, 1.0, 1.5])
    param_names = ["N", "head"]
    timeout = 300

    @setup_once
    def setup(self, N, head):
        self.call, h = ladder_call("pipeline", N, head=head)
        check("pipeline", self.call, h, N, "forward")

    def time_kernel(self, N, head):
        self.call()


class HandOff:
    """An empty task pair through cpu-chunked's threads (the caller's and a helper's): the fixed
    cost of each hand-off, two a tile for the three-pass schedule, one for the pipeline."""

    version = "1"

    def setup(self):
        chunked._threads.run([lambda: None, lambda: None])

    def time_empty_pair(self):
        chunked._threads.run([lambda: None, lambda: None])
