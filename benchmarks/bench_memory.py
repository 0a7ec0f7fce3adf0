"""Memory of a call whose gate is broadcast (stride 0): read through its strides, not copied."""

from __future__ import annotations

import resource

import torch

import lrbench

from .common import setup_once

T, N = 1 << 20, 256  # T * N = 2^28: a 1 GiB fp32 output


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class BroadcastGate:
    """``linear_recurrence(a.expand(T, N), x)`` on cpu-serial: peak memory, and the growth of the
    process's peak during one call as a multiple of the output's size (1 = the output alone).
    Both lower is better."""

    version = "1"  # set by hand: bump it when what is measured changes
    timeout = 300

    @setup_once
    def setup(self):
        self.x = torch.randn(T, N)
        self.a = torch.full((1, N), 0.999).expand(T, N)
        lrbench.linear_recurrence(self.a[:64], self.x[:64], backend="cpu-serial")  # compile

    def _call(self):
        return lrbench.linear_recurrence(self.a, self.x, backend="cpu-serial")

    def peakmem_broadcast_gate(self):
        self._call()

    def track_peak_growth_over_output(self):
        before = _maxrss_bytes()
        h = self._call()
        return (_maxrss_bytes() - before) / (h.numel() * h.element_size())

    track_peak_growth_over_output.unit = "peak growth / output size"
