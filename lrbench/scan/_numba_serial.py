"""Numba kernels for the serial scan over flat, C-contiguous buffers of time-major ``(T, N)`` rows.

Every operand is addressed as ``buf[base + p * rs + n]`` for processing position ``p`` and channel
``n``, with one row stride ``rs`` (``+N`` forward in time, ``-N`` reversed). Shifted and reversed
views therefore cost nothing, and all index arithmetic is int64 (numba's ``intp``).

``scan``:      h[p] = a[p] * h[p-1] + x[p], from the carry ``c`` (updated in place).
``scan_grad``: the same recurrence for the backward's g, plus ``ga[p] = g[p] * hp[p]``.
These loop over a runtime N with the carries in memory; for N <= 8 the serial backend uses the
chain kernels of ``_numba_chains`` instead, which keep them in registers.
"""
from __future__ import annotations

import numba as nb


@nb.njit(inline="always")
def _row(buf, base, p, rs, N):
    """The N channels of position p."""
    r = base + p * rs
    return buf[r:r + N]


@nb.njit(cache=True, nogil=True)
def scan(a, ao, x, xo, h, ho, rs, T, N, c):
    for p in range(T):
        ar, xr, hr = _row(a, ao, p, rs, N), _row(x, xo, p, rs, N), _row(h, ho, p, rs, N)
        for n in range(N):
            v = ar[n] * c[n] + xr[n]
            c[n] = v
            hr[n] = v


@nb.njit(cache=True, nogil=True)
def scan_grad(a, ao, x, xo, hp, hpo, g, go, ga, gao, rs, T, N, c):
    for p in range(T):
        ar, xr, pr = _row(a, ao, p, rs, N), _row(x, xo, p, rs, N), _row(hp, hpo, p, rs, N)
        gr, gar = _row(g, go, p, rs, N), _row(ga, gao, p, rs, N)
        for n in range(N):
            v = ar[n] * c[n] + xr[n]
            c[n] = v
            gr[n] = v
            gar[n] = v * pr[n]
