"""The paper's configurations: Table 1 (minibatch 1, m features, kernel-level forward).

Speedup = serial time / parallel time on the same device; the report pairs cuda-paper and
cuda-scan with cuda-serial (the paper's PLR/SLR), and cpu-chunked with cpu-serial.
"""

from __future__ import annotations

from .common import scan_call, setup_once, sync

TABLE1_BACKENDS = ["cuda-serial", "cuda-paper", "cuda-scan", "cpu-serial", "cpu-chunked"]


class Table1:
    version = "1"  # set by hand: bump it when what is measured changes
    params = (TABLE1_BACKENDS, [4, 32, 128], [16, 256, 4096, 65536])
    param_names = ["backend", "m", "T"]

    @setup_once
    def setup(self, backend, m, T):
        self.device, self.call = scan_call(backend, T, m, "float32")

    def time_forward(self, backend, m, T):
        self.call()
        sync(self.device)
