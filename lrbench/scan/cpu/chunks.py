"""Numba kernels for cpu-chunked's many-channel chunks (flat buffers, see ``rows``), and
the carries between chunks; few channels use the chain kernels of ``chains``.

``reduce``: a chunk's gate product P and its scan from 0, R (the paper's Algorithm 1, step 1);
``carries``: the carry entering each chunk, from the summaries of the chunks before it (step 2).
P is flushed to zero once subnormal (see ``chains``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .chains import FLUSH, _ftz
from .rows import _ahead, _prefetch, _row


@nb.njit(cache=True, nogil=True)
def reduce(a, ao, x, xo, rs, N, L, P, R, tiny):
    """P, R <- (prod a, scan from 0) over positions [0, L), channel by channel; P and R are (N,).
    Accumulated in arrays of the kernel's own, so that no two threads store to one cache line every
    step (P and R of neighbouring chunks may share one)."""
    pj, rj = np.ones(N, a.dtype), np.zeros(N, a.dtype)
    for b in range(0, L, FLUSH):
        for p in range(b, min(b + FLUSH, L)):
            r, lines = _ahead(p, rs, L, N, a.itemsize)
            for n in lines:
                _prefetch(a, ao + r + n)
                _prefetch(x, xo + r + n)
            ar, xr = _row(a, ao, p, rs, N), _row(x, xo, p, rs, N)
            for n in range(N):
                pj[n] = pj[n] * ar[n]
                rj[n] = ar[n] * rj[n] + xr[n]
        for n in range(N):
            pj[n] = _ftz(pj[n], tiny)
    P[:], R[:] = pj, rj


@nb.njit(cache=True, nogil=True)
def carries(P, R, F, c, cin, lost):
    """cin[j] <- carry entering chunk j (starting from c); c <- carry leaving the last chunk.
    Returns False when a carry may be wrong, so that the caller runs the tile serially instead.

    A carry of exactly 0 entering a chunk whose first gate F is finite leaves R, the chunk's scan
    from 0, which is what the serial loop computes there; ``P * 0`` would turn a gate product that
    overflowed to inf into NaN. A first gate of inf or NaN times 0 is NaN, as in the serial loop.
    ``reduce`` flushes a subnormal P to 0, dropping at most ``tiny * |c|``: harmless unless R is
    itself that small (a decayed state with no input, which later gates above 1 could amplify), so
    a flushed P meeting ``|R| < lost * |c|`` (lost = tiny / eps) counts as possibly wrong."""
    C, N = P.shape
    exact = True
    for j in range(C):
        for n in range(N):
            cin[j, n] = c[n]
            if c[n] == 0 and np.isfinite(F[j, n]):
                c[n] = R[j, n]
            else:
                if P[j, n] == 0 and abs(R[j, n]) < lost * abs(c[n]):
                    exact = False
                c[n] = P[j, n] * c[n] + R[j, n]
    return exact
