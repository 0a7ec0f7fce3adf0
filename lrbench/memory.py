"""Fresh CPU outputs for ``linear_recurrence``: big ones reuse the pages of outputs already freed.

A fresh buffer is paid for page by page on first touch; on a VM with slow page faults that costs
more than the scan, and advising ``MADV_HUGEPAGE`` (one fault per 2 MiB) helps until the kernel
spends spells compacting memory for those huge pages. asv measures both sides: ``bench_cpu.
FirstTouch`` (filling a fresh buffer against a preallocated one) and ``bench_regression``'s
``cpu-serial T=65536 N=256`` ``fresh`` against ``out`` rows (a 64 MB output).

So an output of at least ``MIN_BYTES`` comes from a pool: when the tensor's storage is freed, its
buffer is kept (up to ``KEEP_BYTES`` in all, then returned to the OS as usual) and the next output
of the same size reuses it, its pages already in place. A buffer made fresh is still advised huge
pages. Such a tensor is an ordinary tensor over NumPy memory (``torch.from_numpy``).
``KEEP_BYTES = 0`` turns the reuse off.

The pool is bounded by use as well as by size: a kept buffer not taken again before
``KEEP_MISSES`` later outputs had to be made fresh (a workload whose sizes keep changing) is
returned to the OS, so a steady loop keeps its buffers and a drifting one keeps at most a few.
A buffer is never handed back at interpreter exit (``atexit=False``): a late exit handler may
still hold an output, and a new output must never share its memory.

Outputs of the Numba CPU backends cannot be resized (``resize_``), small ones included: the
kernels write them through a NumPy view, and torch marks a storage so viewed as fixed in size.
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
KEEP_BYTES = 1 << 30  # freed output buffers kept for reuse, at most
KEEP_MISSES = 4  # ... and each only until this many later outputs were made fresh
try:
    _madvise = ctypes.CDLL(None, use_errno=True).madvise
    _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    _ADVICE = mmap.MADV_HUGEPAGE
except (AttributeError, OSError):  # not Linux, or no transparent huge pages
    _madvise = None

_lock = threading.RLock()  # re-entrant: a collection inside _give_back may free another output
_kept: dict[int, list[tuple[np.ndarray, int]]] = {}  # size -> freed (buffer, _misses when freed)
_kept_bytes = 0
_misses = 0  # outputs made fresh so far: the clock that ages kept buffers


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
    view = buf.view()  # dies with the tensor's storage; buf goes back to the pool
    weakref.finalize(view, _give_back, buf).atexit = False
    return torch.from_numpy(view).view(dtype).view(shape)


def _take(nbytes: int) -> np.ndarray:
    global _kept_bytes, _misses
    with _lock:
        if _kept.get(nbytes):
            _kept_bytes -= nbytes
            return _kept[nbytes].pop()[0]
        _misses += 1
        _evict(_misses - KEEP_MISSES)
    raw = np.empty(nbytes + 64, np.uint8)  # aligned to 64 bytes, as torch.empty's memory is
    skip = -raw.ctypes.data % 64
    buf = raw[skip : skip + nbytes]
    start = -(-buf.ctypes.data // HUGE) * HUGE
    end = (buf.ctypes.data + nbytes) // HUGE * HUGE
    if _madvise is not None and end > start:
        _madvise(start, end - start, _ADVICE)  # advice only: a failure changes nothing
    return buf


def _evict(before: int) -> None:
    """Return to the OS every kept buffer freed before miss number ``before`` (caller holds _lock)."""
    global _kept_bytes
    for size in list(_kept):
        fresh = [(b, at) for b, at in _kept[size] if at >= before]
        _kept_bytes -= size * (len(_kept[size]) - len(fresh))
        if fresh:
            _kept[size] = fresh
        else:
            del _kept[size]


def _give_back(buf: np.ndarray) -> None:
    global _kept_bytes
    with _lock:
        if _kept_bytes + buf.nbytes <= KEEP_BYTES:
            _kept.setdefault(buf.nbytes, []).append((buf, _misses))
            _kept_bytes += buf.nbytes


def kept_bytes() -> int:
    """Bytes of freed outputs kept for reuse now."""
    return _kept_bytes


def release() -> None:
    """Return every kept buffer to the operating system."""
    global _kept_bytes
    with _lock:
        _kept.clear()
        _kept_bytes = 0
