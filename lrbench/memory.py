"""Fresh CPU outputs backed by transparent huge pages, where the OS offers them.

A fresh buffer is paid for page by page on first touch; on a VM with slow page faults that costs
more than the scan (a 64 MB output: 24 ms to fill fresh, 16 ms on huge pages, measured on the
2-core CI machine). Outputs of at least ``MIN_BYTES`` are anonymous mappings advised
``MADV_HUGEPAGE`` (one fault per 2 MiB instead of per 4 KiB), aligned to 2 MiB; the tensor keeps
its mapping alive and unmaps it when freed. Elsewhere (no madvise, other devices) ``torch.empty``.
"""
from __future__ import annotations

import ctypes
import math
import mmap

import torch

HUGE = 2 << 20
MIN_BYTES = 4 << 20
_ADVISE = hasattr(mmap, "MADV_HUGEPAGE")


def empty(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised contiguous tensor, on huge pages when it is a big CPU buffer."""
    n = math.prod(shape)
    nbytes = n * dtype.itemsize
    if device.type != "cpu" or nbytes < MIN_BYTES or not _ADVISE:
        return torch.empty(shape, dtype=dtype, device=device)
    m = mmap.mmap(-1, nbytes + HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m.madvise(mmap.MADV_HUGEPAGE)
    except OSError:                       # THP disabled in this kernel: plain pages, still correct
        pass
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    return torch.frombuffer(m, dtype=dtype, count=n, offset=(-addr) % HUGE).view(shape)
