"""Numba's worker threads for cpu-chunked: the ``workqueue`` layer, one parallel launch at a time.

Numba's default ``omp`` layer binds to torch's OpenMP runtime (torch loads libgomp globally), whose
workers spin-wait at barriers with the policy read when torch was imported. When the cores are
shared (torch's own pool, another process, a busy CI machine) a spinning worker burns the time
slice of one still computing: on 2 cores at load average 4, cpu-chunked / cpu-serial at N = 1,
T = 2^22 fell to 0.13-0.15x, against 1.2-1.4x with OMP_WAIT_POLICY=PASSIVE set before torch was
imported and 1.1-1.4x on the workqueue layer, whose workers sleep when idle (measured). The
workqueue layer must not be entered from two threads at once, so launches hold ``LOCK``.
"""
from __future__ import annotations

import threading

import numba
from numba.np.ufunc import parallel

LOCK = threading.Lock()


def start() -> None:
    """Choose the workqueue layer before Numba starts its threads (a user's choice is kept)."""
    if not parallel._is_initialized:
        if numba.config.THREADING_LAYER == "default":
            numba.config.THREADING_LAYER = "workqueue"
        parallel._launch_threads()
