"""64-bit offsets: T*N > 2^31 elements through the Numba kernels, cheaply.

The inputs are stride-0 broadcasts (a = 0.5, x = 1, no memory); only the fp32 output is real
(8.6 GB), poisoned with NaN first. h converges to exactly 2.0 after 25 steps, so every element of
the output is known: a 32-bit offset would wrap, leave NaNs behind or crash.
"""

from __future__ import annotations

import numpy as np
import pytest

from lrbench.machine import available_memory
from lrbench.scan.cpu import chunked as cpu_chunked
from lrbench.scan.cpu import serial as cpu_serial
from lrbench.scan.cpu.flat import Order

ELEMS = (1 << 31) + 4096


def _mem_available() -> int:
    return available_memory() or 0


pytestmark = [
    pytest.mark.bigmem,
    pytest.mark.skipif(
        _mem_available() < 4 * ELEMS + (3 << 30), reason="needs about 11 GiB of free memory"
    ),
]


@pytest.fixture(scope="module")
def out():
    return np.empty(ELEMS, np.float32)


def _expected_head(n):
    h, c = np.empty(n, np.float32), np.float32(0)
    for t in range(n):
        c = np.float32(0.5) * c + np.float32(1)
        h[t] = c
    return h


@pytest.mark.parametrize("engine", [cpu_serial, cpu_chunked], ids=["serial", "chunked"])
@pytest.mark.parametrize("N,reverse", [(4096, False), (1, True)])
def test_offsets_beyond_2_31(out, engine, N, reverse):
    T = ELEMS // N
    a = np.broadcast_to(np.float32(0.5), (ELEMS,))
    x = np.broadcast_to(np.float32(1.0), (ELEMS,))
    out.fill(np.nan)
    o = Order(T, N, reverse)
    engine.scan_range(o, (a, 0), (x, 0), (out, 0), T, np.zeros(N, np.float32))
    h = out.reshape(T, N)[::-1] if reverse else out.reshape(T, N)  # processing order
    head = _expected_head(40)
    np.testing.assert_array_equal(h[:40], np.repeat(head[:, None], N, axis=1))
    assert head[-1] == 2.0
    step = max(1, (1 << 26) // N)
    for s in range(40, T, step):  # in slices: no 8 GB temporaries
        assert (h[s : s + step] == 2.0).all(), f"rows {s}..{s + step} of {T} (N={N})"
