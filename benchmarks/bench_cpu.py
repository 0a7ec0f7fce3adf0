"""The CPU backends as users run them: the operating system's share, auto against the best backend,
reverse against forward. All through ``lrbench.linear_recurrence`` with torch's default threads.

Every value is a time or a time ratio, lower is better (asv has no "higher is better"). ``version``
is set by hand (asv would hash the code): bump it when what is measured changes, not on a
refactor."""

from __future__ import annotations

import functools

import torch

import lrbench

from .common import inputs, interleaved_medians, median_seconds, scan_call, setup_once

CPU = ["cpu-serial", "cpu-chunked"]
GRID_T = [1 << 4, 1 << 8, 1 << 12, 1 << 16, 1 << 20]
GRID_N = [1, 2, 4, 8, 16, 64, 256, 4096]
MAX_ELEMENTS = 1 << 24


class FirstTouch:
    """Filling a fresh fp32 buffer of T x N (allocation and first touch, the OS's part of a plain
    call's cost) beside filling a preallocated one."""

    version = "1"
    params = ([1 << 16, 1 << 20], [1, 256], ["fresh", "preallocated"])
    param_names = ["T", "N", "buffer"]

    @setup_once
    def setup(self, T, N, buffer):
        if T * N > MAX_ELEMENTS:
            raise NotImplementedError(f"T*N = {T * N} exceeds the CPU budget")
        self.buf = torch.empty(T, N)
        self.buf.fill_(0.0)

    def time_fill(self, T, N, buffer):
        if buffer == "fresh":
            torch.empty(T, N).fill_(1.0)
        else:
            self.buf.fill_(1.0)


class CPUGrid:
    """Every CPU backend and auto over T x N (fp32, out=): the data ``lrbench auto-table`` turns
    into auto's rule."""

    version = "1"
    params = (CPU + ["auto"], GRID_T, GRID_N)
    param_names = ["backend", "T", "N"]
    timeout = 300

    @setup_once
    def setup(self, backend, T, N):
        if T * N > MAX_ELEMENTS:
            raise NotImplementedError(f"T*N = {T * N} exceeds the CPU budget")
        self.call = scan_call(backend, T, N, "float32", output="out")[1]

    def time_scan(self, backend, T, N):
        self.call()


class AutoVsBest:
    """``auto`` against the fastest CPU backend at one point of T x N (fp32, out=): the time ratio
    auto / best (1 = auto picked the fastest; the target is <= 1 / 0.9 = 1.11 at every point, so
    the largest value in the table is auto's worst point). The subjects share one set of buffers
    (a buffer's placement alone moved cpu-serial between 0.60 and 0.89 of a copy) and are timed in
    ``ROUNDS`` interleaved rounds, each keeping its median, so that a slow spell of the machine
    does not fall on one subject alone. (Until 2026-12 this was
    ``track_best_over_auto_higher_is_better``, its inverse; the committed results were
    converted.)"""

    version = "1"
    params = (GRID_T, GRID_N)
    param_names = ["T", "N"]
    ROUNDS = 3

    @setup_once
    def setup(self, T, N):
        if T * N > MAX_ELEMENTS:
            raise NotImplementedError(f"T*N = {T * N} exceeds the CPU budget")
        a, x = inputs(T, N, "float32", "cpu")
        h = torch.empty_like(x)
        torch.set_grad_enabled(False)
        self.calls = {
            b: functools.partial(lrbench.linear_recurrence, a, x, backend=b, out=h)
            for b in CPU + ["auto"]
        }
        for call in self.calls.values():
            call()  # compile, warm up

    def track_auto_over_best(self, T, N):
        times = interleaved_medians(self.calls, self.ROUNDS)
        return times["auto"] / min(times[b] for b in CPU)

    track_auto_over_best.unit = "auto / best time"


class ReverseOverForward:
    """A reverse scan's time over a forward one's (cpu-serial, out=, fp32); target <= 1.15."""

    version = "1"
    params = ([1, 256],)
    param_names = ["N"]

    @setup_once
    def setup(self, N):
        T = (1 << 24) // max(N, 256) if N > 1 else 1 << 22
        self.fwd = scan_call("cpu-serial", T, N, "float32", output="out")[1]
        self.rev = scan_call("cpu-serial", T, N, "float32", output="out", reverse=True)[1]

    def track_reverse_over_forward(self, N):
        return median_seconds(self.rev, "cpu") / median_seconds(self.fwd, "cpu")

    track_reverse_over_forward.unit = "reverse / forward time"


class AllCoresOverOne:
    """What the other cores add to memory bandwidth: the time of a preallocated fp32 copy of 2^22
    elements (16 MB each way) with torch's default threads over the time of the same copy on one
    thread, in one process (0.55 = all cores copy 1.8x what one does; lower is better). Where
    cpu-serial is bound by memory rather than by its dependency chain (N >= 8 on a 2-core Xeon),
    cpu-chunked's pipeline moves 3.75 operand passes on 2 cores (its reduce reads a and x of 3/8
    of the sequence again) against cpu-serial's 3, so cpu-chunked's speedup over cpu-serial
    cannot exceed (3 / 3.75) / this = 0.8 / this. (Until 2026-12 this was
    ``track_copy_all_cores_over_one``, one core's time over all cores', its inverse; the
    committed results were converted.)"""

    version = "1"

    def setup(self):
        self.src = torch.ones(1 << 22)
        self.dst = torch.empty_like(self.src)
        self.dst.copy_(self.src)

    def track_copy_time_all_cores_over_one(self):
        every = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            one = median_seconds(lambda: self.dst.copy_(self.src), "cpu")
        finally:
            torch.set_num_threads(every)
        return median_seconds(lambda: self.dst.copy_(self.src), "cpu") / one

    track_copy_time_all_cores_over_one.unit = "all cores / one core time"
