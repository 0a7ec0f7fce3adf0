"""The threads of cpu-chunked: its nogil Numba kernels run on the calling thread and on helpers.

Numba's own parallel launch (``prange``) wakes its sleeping workers and then the caller, in turn:
an empty two-thread launch cost 150 us on intel-xeon-2c (workqueue layer, median of 200; 190 us
after 10 ms idle), and cpu-chunked made two per tile. Here the caller runs the first task itself
and hands the others to helper threads: an empty pair cost 85 us, most of it the helper waking,
which overlaps the caller's own work. The cores are ``numba.get_num_threads()`` (set them with
``numba.set_num_threads``). A scan holds ``LOCK``, so that two callers do not oversubscribe them.

Numba's threading layer is still chosen here, though no kernel runs on it: ``get_num_threads``
starts it, and its default ``omp`` layer would bind to torch's OpenMP runtime (torch loads libgomp
globally), whose workers spin at barriers with the policy read when torch was imported.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numba
from numba.np.ufunc import parallel

LOCK = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def start() -> None:
    """Choose the workqueue layer before Numba starts its threads (a user's choice is kept)."""
    if not parallel._is_initialized:
        if numba.config.THREADING_LAYER == "default":
            numba.config.THREADING_LAYER = "workqueue"
        parallel._launch_threads()


def cores() -> int:
    return numba.get_num_threads()


def _helpers() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max(1, numba.config.NUMBA_NUM_THREADS - 1), "lrbench-scan")
    return _pool


def _forget_helpers() -> None:          # a forked child has none of its parent's threads
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
