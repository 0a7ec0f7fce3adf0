"""Fresh CPU outputs for ``linear_recurrence``: big ones reuse the pages of outputs already freed.

A fresh buffer is paid for page by page on first touch; on a VM with slow page faults that costs
more than the scan. Measured on intel-xeon-2c, T = 65536, N = 256 (a 64 MB output), a plain call
took 20 ms on ordinary pages and 14 ms advised ``MADV_HUGEPAGE`` (one fault per 2 MiB), but 72-74
ms for spells of several calls while the kernel compacted memory for those huge pages; the same
scan into an ``out=`` tensor took 10.5 ms.

So an output of at least ``MIN_BYTES`` comes from a pool: when the tensor's storage is freed, its
buffer is kept (up to ``KEEP_BYTES`` in all, then returned to the OS as usual) and the next output
of the same size reuses it, its pages already in place. A buffer made fresh is still advised huge
pages. Such a tensor is an ordinary tensor over NumPy memory (``torch.from_numpy``); it cannot be
resized beyond its size. ``KEEP_BYTES = 0`` turns the reuse off.
"""
from __future__ import annotations

import ctypes
import math
import mmap
import os
import threading
import weakref

import numpy as np
import torch

HUGE = 2 << 20
MIN_BYTES = 4 << 20
KEEP_BYTES = 1 << 30      # freed output buffers kept for reuse, at most
try:
    _madvise = ctypes.CDLL(None, use_errno=True).madvise
    _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    _ADVICE = mmap.MADV_HUGEPAGE
except (AttributeError, OSError):         # not Linux, or no transparent huge pages
    _madvise = None

_lock = threading.RLock()    # re-entrant: a collection inside _give_back may free another output
_kept: dict[int, list[np.ndarray]] = {}   # size in bytes -> freed buffers of that size
_kept_bytes = 0


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.RLock()


os.register_at_fork(after_in_child=_reset_after_fork)


def empty(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised contiguous tensor; a big CPU one on reused (or huge) pages."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES or torch.device(device).type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    buf = _take(nbytes)
    view = buf.view()                  # dies with the tensor's storage; buf goes back to the pool
    weakref.finalize(view, _give_back, buf)
    return torch.from_numpy(view).view(dtype).view(shape)


def _take(nbytes: int) -> np.ndarray:
    global _kept_bytes
    with _lock:
        if _kept.get(nbytes):
            _kept_bytes -= nbytes
            return _kept[nbytes].pop()
    raw = np.empty(nbytes + 64, np.uint8)    # aligned to 64 bytes, as torch.empty's memory is
    skip = -raw.ctypes.data % 64
    buf = raw[skip:skip + nbytes]
    start = -(-buf.ctypes.data // HUGE) * HUGE
    end = (buf.ctypes.data + nbytes) // HUGE * HUGE
    if _madvise is not None and end > start:
        _madvise(start, end - start, _ADVICE)     # advice only: a failure changes nothing
    return buf


def _give_back(buf: np.ndarray) -> None:
    global _kept_bytes
    with _lock:
        if _kept_bytes + buf.nbytes <= KEEP_BYTES:
            _kept.setdefault(buf.nbytes, []).append(buf)
            _kept_bytes += buf.nbytes


def release() -> None:
    """Return every kept buffer to the operating system."""
    global _kept_bytes
    with _lock:
        _kept.clear()
        _kept_bytes = 0
