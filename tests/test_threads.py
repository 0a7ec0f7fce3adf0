"""cpu-chunked from several Python threads at once: Numba's workqueue layer is entered by one
launch at a time (``lrbench.scan._threads.LOCK``), and every result is right."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import torch

from conftest import assert_close, make_inputs, run, TOL


def test_concurrent_callers_get_right_answers(small_chunks):
    problems = [make_inputs(2000 + 7 * i, 1 + i % 3, torch.float64, seed=i) for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda p: run("cpu-chunked", *p), problems))
    assert numba.threading_layer() == "workqueue"
    for p, h in zip(problems, got):
        assert_close("h", h, run("reference", *p), **TOL[torch.float64])
