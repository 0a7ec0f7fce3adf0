"""Fresh CPU outputs backed by transparent huge pages, where the OS offers them.

A fresh buffer is paid for page by page on first touch; on a VM with slow page faults that costs
more than the scan (a 64 MB output: 24 ms to fill fresh, 16 ms on huge pages, measured on the
2-core CI machine). An output of at least ``MIN_BYTES`` is an ordinary ``torch.empty`` tensor
whose untouched pages (large allocations are fresh mappings) are advised ``MADV_HUGEPAGE`` before
the kernel first writes them: one fault per 2 MiB instead of per 4 KiB. Without madvise (other
systems, other devices) nothing changes.
"""
from __future__ import annotations

import ctypes
import math
import mmap

import torch

HUGE = 2 << 20
MIN_BYTES = 4 << 20
try:
    _madvise = ctypes.CDLL(None, use_errno=True).madvise
    _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    _ADVICE = mmap.MADV_HUGEPAGE
except (AttributeError, OSError):         # not Linux, or no transparent huge pages
    _madvise = None


def empty(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised contiguous tensor, on huge pages when it is a big CPU buffer."""
    t = torch.empty(shape, dtype=dtype, device=device)
    nbytes = math.prod(shape) * dtype.itemsize
    if _madvise is not None and t.device.type == "cpu" and nbytes >= MIN_BYTES:
        start = -(-t.data_ptr() // HUGE) * HUGE
        end = (t.data_ptr() + nbytes) // HUGE * HUGE
        if end > start:
            _madvise(start, end - start, _ADVICE)     # advice only: a failure changes nothing
    return t
