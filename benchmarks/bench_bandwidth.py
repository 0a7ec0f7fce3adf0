"""Copy time of each device, and every scan's time against a copy of the same bytes.

The floor of a forward fp32 scan is 12 bytes per element (read a and x, write h). The ``track_``
values time scan and copy of the same bytes back to back in one process, so the ratio holds up
on a slow or noisy machine. On the GPU: CUDA events after a warm-up, and every buffer at least
1 GiB (``GPU_MIN_BUFFER``), far beyond the L2. asv counts a larger value as worse and has no
"higher is better" flag, so every value here is a time or a time ratio (lower is better); the
report derives bandwidths from them: copy GB/s = 2 * MB * 2^20 / seconds / 1e9, scan GB/s =
12 T N / seconds / 1e9 and % of copy bandwidth = 100 / (scan / copy).

``version``: set by hand (asv would hash the code); bump it when what is measured changes.
"""

from __future__ import annotations

import torch

from .common import (
    BACKENDS,
    GPU_MIN_BUFFER,
    backend_device,
    check_device,
    copy_seconds,
    median_seconds,
    scan_call,
    setup_once,
    sync,
)

SIZES_MB = [16, 256, 2048]
CPU_MAX_MB = 256


class Copy:
    """A device copy: MB read once and written once."""

    version = "1"
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

    def track_copy_seconds(self, device, MB):
        """lrbench's timer (CUDA events on the GPU): 2 * MB moved; GB/s = 2 * MB * 2^20 / this / 1e9."""
        return copy_seconds(self.src.nbytes, device)

    track_copy_seconds.unit = "seconds"


# 2^24 elements (T, N), scaled per device by ``shape``.
SHAPES = ["65536x256", "16777216x1", "4096x4096"]
GPU_SCALE, CPU_SCALE = 32, 1 / 4


def shape(backend: str, TxN: str) -> tuple[int, int]:
    """(T, N) where the backend runs: T x 32 on the GPU (2 GiB per fp32 tensor), T / 4 on the CPU."""
    T, N = map(int, TxN.split("x"))
    scale = GPU_SCALE if backend_device(backend) == "cuda" else CPU_SCALE
    return int(T * scale), N


class ScanBandwidth:
    """Forward scan, fp32: its time, and its time over a copy of the same 12 bytes per element."""

    version = "1"
    params = (BACKENDS, SHAPES)
    param_names = ["backend", "TxN"]
    timeout = 300

    @setup_once
    def setup(self, backend, TxN):
        T, N = shape(backend, TxN)
        self.nbytes = 12 * T * N  # fp32: read a and x, write h
        self.device, self.call = scan_call(backend, T, N, "float32")

    def track_scan_over_copy(self, backend, TxN):
        """1 = the scan streams at copy bandwidth; % of copy bandwidth = 100 / this."""
        scan = median_seconds(self.call, self.device)
        copy = copy_seconds(self.nbytes // 2, self.device)  # moves nbytes, like the scan
        return scan / copy

    track_scan_over_copy.unit = "scan / copy time"

    def track_scan_seconds(self, backend, TxN):
        """GB/s = 12 T N / this / 1e9, with (T, N) = ``shape(backend, TxN)``."""
        return median_seconds(self.call, self.device)

    track_scan_seconds.unit = "seconds"
