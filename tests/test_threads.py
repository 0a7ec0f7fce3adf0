"""cpu-chunked from several Python threads at once: one scan at a time holds
``lrbench.scan.cpu.threads.LOCK`` and hands its tasks to the shared helper threads, and every result
is right; ``_threads.run`` waits for every task."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from conftest import assert_close, make_inputs, run, TOL
import lrbench
from lrbench.scan.cpu import threads as _threads


def test_concurrent_callers_get_right_answers(small_chunks):
    problems = [make_inputs(2000 + 7 * i, 1 + i % 3, torch.float64, seed=i) for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda p: run("cpu-chunked", *p), problems))
    for p, h in zip(problems, got):
        assert_close("h", h, run("reference", *p), **TOL[torch.float64])


def test_run_waits_for_every_task_and_raises_a_helpers_error():
    """_threads.run returns only when every task is done, and re-raises a helper's failure."""
    done = threading.Event()

    def slow():
        time.sleep(0.05)
        done.set()

    def fails():
        raise ValueError("helper failed")

    with pytest.raises(ValueError, match="helper failed"):
        _threads.run([lambda: None, fails, slow])
    assert done.is_set()


def test_one_thread_knob_and_numba_threads_never_started():
    """cpu-chunked follows torch's thread count (lrbench.set_num_threads sets it); Numba's threading
    layer is never started, so its pool neither spins nor competes with torch's."""
    from numba.np.ufunc import parallel

    before = torch.get_num_threads()
    try:
        lrbench.set_num_threads(1)
        assert _threads.cores() == torch.get_num_threads() == 1
        a, x, h0 = make_inputs(5000, 8, torch.float64)
        assert_close(
            "h on 1 core",
            run("cpu-chunked", a, x, h0),
            run("reference", a, x, h0),
            **TOL[torch.float64],
        )
    finally:
        torch.set_num_threads(before)
    assert not parallel._is_initialized
    with pytest.raises(ValueError, match=r"argument 'n' must be a positive int"):
        lrbench.set_num_threads(0)
