"""The regression subset: the rows that matter, a few dozen, for ``asv continuous -b Regression``
(minutes on 2 cores) and for the history over the project's commits. GPU rows are n/a at once on
a CPU machine."""

from __future__ import annotations

from .common import scan_call, setup_once, sync

# backend, T, N, pass (forward into a fresh output, forward into out=, forward+backward)
CASES = [
    ("cpu-serial", 1 << 16, 256, "fresh"),
    ("cpu-serial", 1 << 16, 256, "out"),
    ("cpu-serial", 1 << 16, 256, "reverse"),
    ("cpu-serial", 1 << 16, 256, "grad"),
    ("cpu-serial", 1 << 22, 1, "out"),
    ("cpu-chunked", 1 << 22, 1, "out"),
    ("cpu-serial", 1 << 20, 4, "out"),
    ("cpu-chunked", 1 << 20, 4, "out"),
    ("cpu-serial", 1 << 18, 16, "out"),
    ("cpu-chunked", 1 << 18, 16, "out"),
    ("cpu-chunked", 1 << 16, 256, "out"),
    ("cpu-chunked", 1 << 22, 1, "grad"),
    ("auto", 1 << 4, 1, "fresh"),
    ("auto", 1 << 12, 4096, "fresh"),
    ("auto", 1 << 20, 4, "fresh"),
    ("auto", 1 << 16, 256, "fresh"),
    ("auto", 1 << 22, 1, "fresh"),
    ("torch-loop", 1 << 12, 256, "fresh"),
    ("log-space", 1 << 12, 256, "fresh"),
    ("cuda-scan", 1 << 20, 1, "out"),
    ("cuda-scan", 1 << 16, 256, "out"),
    ("cuda-scan", 1 << 24, 32, "out"),
    ("cuda-scan", 1 << 16, 256, "grad"),
    ("cuda-serial", 1 << 16, 256, "out"),
    ("cuda-paper", 1 << 20, 1, "out"),
    ("triton-scan", 1 << 16, 256, "out"),
]


class Regression:
    version = "1"  # set by hand: bump it when what is measured changes
    params = ([f"{b} T={T} N={N} {p}" for b, T, N, p in CASES],)
    param_names = ["case"]
    timeout = 300

    @setup_once
    def setup(self, case):
        backend, T, N, p = case.split()
        T, N = int(T[2:]), int(N[2:])
        self.device, self.call = scan_call(
            backend,
            T,
            N,
            "float32",
            grad=p == "grad",
            output="out" if p in ("out", "reverse") else "fresh",
            reverse=p == "reverse",
        )

    def time_scan(self, case):
        self.call()
        sync(self.device)
