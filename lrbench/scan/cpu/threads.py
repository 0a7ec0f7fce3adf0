"""The threads of cpu-chunked: its nogil Numba kernels run on the calling thread and on helpers.

Numba's own parallel launch (``prange``) wakes its sleeping workers and then the caller, in turn.
Here the caller runs the first task itself and hands the others to helper threads, so the
helper's waking overlaps the caller's own work; the cost of an empty pair is asv's
``bench_kernels.HandOff`` (results/tables/kernels_<machine>.md). A scan holds ``LOCK``, so that
two callers do not oversubscribe the cores.

One knob: the cores are torch's thread count (``torch.set_num_threads``, or
``lrbench.set_num_threads``), like every other torch CPU op. Numba's threading layer is never
started (no kernel uses ``prange``), so its pool neither spins nor competes with torch's.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import torch

LOCK = threading.Lock()
_pool: ThreadPoolExecutor | None = None
MAX_HELPERS = 1024  # a bound, not a pool size: threads start only when tasks need them


def cores() -> int:
    """The cores a cpu-chunked scan uses: ``torch.get_num_threads()``."""
    return torch.get_num_threads()


def _helpers() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(MAX_HELPERS, "lrbench-scan")
    return _pool


def _forget_helpers() -> None:  # a forked child has none of its parent's threads
    global _pool, LOCK
    _pool, LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_helpers)


def run(tasks) -> None:
    """Call every task at once, the first on this thread; return when all are done (a Ctrl-C
    included: the helpers still write the outputs), then raise the caller's task's error, else
    the first failed helper's. A task that others wait for must signal them even when it fails."""
    pending = [_helpers().submit(t) for t in tasks[1:]]
    error = None
    try:
        tasks[0]()
    except BaseException as e:  # noqa: BLE001 - re-raised below, once the helpers are done
        error = e
    while pending:
        try:
            wait(pending)
            break
        except KeyboardInterrupt as e:
            error = error or e
    for f in pending:
        if error is None and f.exception() is not None:
            error = f.exception()
    if error is not None:
        raise error
