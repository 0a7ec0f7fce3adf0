"""The scan, forward and forward+backward, over backend x T x N x dtype."""

from __future__ import annotations

from .common import BACKENDS, scan_call, setup_once, sync

TS = [1 << 4, 1 << 8, 1 << 12, 1 << 16, 1 << 20]
NS = [1, 4, 32, 128, 1024, 65536]
DTYPES = ["float32", "bfloat16"]


class ScanForward:
    """``h = linear_recurrence(a, x)``. output "fresh": h allocated per call, what a plain call
    costs; "out": written into a preallocated h (``out=``), the kernel's own cost. The gap is the
    operating system's first touch of fresh pages (see ``bench_cpu.FirstTouch``)."""

    version = "1"  # set by hand: bump it when what is measured changes
    params = (BACKENDS, TS, NS, DTYPES, ["fresh", "out"])
    param_names = ["backend", "T", "N", "dtype", "output"]
    timeout = 300

    @setup_once
    def setup(self, backend, T, N, dtype, output):
        self.device, self.call = scan_call(backend, T, N, dtype, output=output)

    def time_forward(self, backend, T, N, dtype, output):
        self.call()
        sync(self.device)


class ScanForwardBackward:
    """One training step of the recurrence: forward, then the gradients of a and x."""

    version = "1"
    params = (BACKENDS, TS, NS, DTYPES)
    param_names = ["backend", "T", "N", "dtype"]
    timeout = 300

    @setup_once
    def setup(self, backend, T, N, dtype):
        self.device, self.call = scan_call(backend, T, N, dtype, grad=True)

    def time_forward_backward(self, backend, T, N, dtype):
        self.call()
        sync(self.device)
