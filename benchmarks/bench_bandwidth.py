"""Copy bandwidth of each device, and every scan's throughput as a share of it.

The floor of a forward fp32 scan is 12 bytes per element (read a and x, write h). The ``track_``
values time scan and copy of the same bytes back to back in one process, so the ratio holds up
on a slow or noisy machine. On the GPU: CUDA events after a warm-up, and every buffer at least
1 GiB (``GPU_MIN_BUFFER``), far beyond the L2. asv counts a larger ``track_`` value as worse;
these names say "higher is better".
"""
from __future__ import annotations

import torch

from .common import (BACKENDS, GPU_MIN_BUFFER, backend_device, check_device, copy_seconds,
                     median_seconds, scan_call, setup_once, sync)

SIZES_MB = [16, 256, 2048]
CPU_MAX_MB = 256


class Copy:
    """A device copy: MB read once and written once."""
    params = (["cpu", "cuda"], SIZES_MB)
    param_names = ["device", "MB"]

    @setup_once
    def setup(self, device, MB):
        check_device(device)
        if device == "cuda" and MB << 20 < GPU_MIN_BUFFER:
            raise NotImplementedError(f"{MB} MB fits in a GPU's L2: GPU copies use >= 1 GiB")
        if device == "cpu" and MB > CPU_MAX_MB:
            raise NotImplementedError(f"CPU copies are capped at {CPU_MAX_MB} MB")
        self.src = torch.ones(MB << 18, dtype=torch.float32, device=device)
        self.dst = torch.empty_like(self.src)
        self.dst.copy_(self.src)
        sync(device)

    def time_copy(self, device, MB):
        self.dst.copy_(self.src)
        sync(device)

    def track_copy_GBps_higher_is_better(self, device, MB):
        return 2 * self.src.nbytes / copy_seconds(self.src.nbytes, device) / 1e9
    track_copy_GBps_higher_is_better.unit = "GB/s"


# 2^24 elements (T, N), scaled per device by ``shape``.
SHAPES = ["65536x256", "16777216x1", "4096x4096"]
GPU_SCALE, CPU_SCALE = 32, 1 / 4


def shape(backend: str, TxN: str) -> tuple[int, int]:
    """(T, N) where the backend runs: T x 32 on the GPU (2 GiB per fp32 tensor), T / 4 on the CPU."""
    T, N = map(int, TxN.split("x"))
    scale = GPU_SCALE if backend_device(backend) == "cuda" else CPU_SCALE
    return int(T * scale), N


class ScanBandwidth:
    """Forward scan, fp32: 12 bytes per element per second, and as % of copy bandwidth."""
    params = (BACKENDS, SHAPES)
    param_names = ["backend", "TxN"]
    timeout = 300

    @setup_once
    def setup(self, backend, TxN):
        T, N = shape(backend, TxN)
        self.nbytes = 12 * T * N                       # fp32: read a and x, write h
        self.device, self.call = scan_call(backend, T, N, "float32")

    def track_percent_of_copy_higher_is_better(self, backend, TxN):
        scan = median_seconds(self.call, self.device)
        copy = copy_seconds(self.nbytes // 2, self.device)   # moves nbytes, like the scan
        return 100.0 * copy / scan
    track_percent_of_copy_higher_is_better.unit = "% of copy bandwidth"

    def track_scan_GBps_higher_is_better(self, backend, TxN):
        return self.nbytes / median_seconds(self.call, self.device) / 1e9
    track_scan_GBps_higher_is_better.unit = "GB/s"
