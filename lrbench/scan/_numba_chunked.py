"""Numba kernels for the paper's Algorithm 1 on CPU cores, many channels (flat buffers, see
``_numba_serial``); few channels use the chain kernels of ``_numba_chains``.

Positions ``[0, C*L)`` (relative to each operand's base) are cut into C chunks of L steps:
  1. ``reduce``: per chunk, in parallel, P = prod(a) and R = the chunk's scan from 0;
  2. ``carries``: serial scan of the C summaries from the incoming carry (C is small);
  3. ``rescan`` / ``rescan_grad``: per chunk, in parallel, the scan from its carry-in.
Each chunk accumulates P and R in its own arrays, so that no two cores store to one cache line
every step (rows of a shared (C, N) array may share one). P is flushed to zero once subnormal
(see ``_numba_chains``). Chunk lengths must not be a multiple of 4 KiB: 16 streams that
far apart land in the same L1 sets and run 3x slower (measured); the driver staggers L.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from ._numba_chains import FLUSH, _ftz
from ._numba_serial import _ahead, _prefetch, _row, scan, scan_grad


@nb.njit(cache=True, nogil=True, parallel=True)
def reduce(a, ao, x, xo, rs, N, L, C, P, R, tiny):
    """P[j], R[j] <- (prod a, scan from 0) over chunk j; P and R are (C, N)."""
    for j in nb.prange(C):
        pj, rj = np.ones(N, a.dtype), np.zeros(N, a.dtype)
        e = (j + 1) * L
        for b in range(j * L, e, FLUSH):
            for p in range(b, min(b + FLUSH, e)):
                r, lines = _ahead(p, rs, e, N, a.itemsize)
                for n in lines:
                    _prefetch(a, ao + r + n); _prefetch(x, xo + r + n)
                ar, xr = _row(a, ao, p, rs, N), _row(x, xo, p, rs, N)
                for n in range(N):
                    pj[n] = pj[n] * ar[n]
                    rj[n] = ar[n] * rj[n] + xr[n]
            for n in range(N):
                pj[n] = _ftz(pj[n], tiny)
        P[j], R[j] = pj, rj


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


@nb.njit(cache=True, nogil=True, parallel=True)
def rescan(a, ao, x, xo, h, ho, rs, N, L, C, cin):
    """h <- scan of every chunk from its carry-in."""
    for j in nb.prange(C):
        o = j * L * rs
        scan(a, ao + o, x, xo + o, h, ho + o, rs, L, N, cin[j].copy())


@nb.njit(cache=True, nogil=True, parallel=True)
def rescan_grad(a, ao, x, xo, hp, hpo, g, go, ga, gao, rs, N, L, C, cin):
    """g <- scan of every chunk from its carry-in, and ga <- g * hp, in the same pass."""
    for j in nb.prange(C):
        o = j * L * rs
        scan_grad(a, ao + o, x, xo + o, hp, hpo + o, g, go + o, ga, gao + o, rs, L, N, cin[j].copy())
