"""Numba kernels for the paper's Algorithm 1 on CPU cores (flat buffers, see ``_numba_serial``).

Positions ``[0, C*L)`` (relative to each operand's base) are cut into C chunks of L steps:
  1. ``reduce``: per chunk, in parallel, P = prod(a) and R = the chunk's scan from 0;
  2. ``carries``: serial scan of the C summaries from the incoming carry (C is small);
  3. ``rescan`` / ``rescan_grad``: per chunk, in parallel, the scan from its carry-in.
With one channel a chunk is a single FMA chain, latency-bound; the ``_1`` variants therefore run
8 chunks in lock-step with 8 carries in registers, so one core keeps 8 chains in flight. They take
1-D views in processing order. Chunk lengths must not be a multiple of 4 KiB: 16 streams that far
apart land in the same L1 sets and run 3x slower (measured); the driver staggers L.
"""
from __future__ import annotations

import numba as nb

from ._numba_serial import _row, scan, scan_grad

K1 = 8   # chunks interleaved per prange iteration when N == 1


@nb.njit(cache=True, nogil=True, parallel=True)
def reduce(a, ao, x, xo, rs, N, L, C, P, R):
    """P[j], R[j] <- (prod a, scan from 0) over chunk j; P and R are (C, N)."""
    for j in nb.prange(C):
        pj, rj = P[j], R[j]
        pj[:] = 1
        rj[:] = 0
        o = j * L
        for p in range(o, o + L):
            ar, xr = _row(a, ao, p, rs, N), _row(x, xo, p, rs, N)
            for n in range(N):
                pj[n] = pj[n] * ar[n]
                rj[n] = ar[n] * rj[n] + xr[n]


@nb.njit(cache=True, nogil=True, parallel=True)
def reduce_1(a, x, L, C, P, R):
    """``reduce`` for one channel: a, x are 1-D views in processing order; C % 8 == 0."""
    for g in nb.prange(C // K1):
        j = g * K1
        a0, a1, a2, a3, a4, a5, a6, a7 = _chunks(a, j, L)
        x0, x1, x2, x3, x4, x5, x6, x7 = _chunks(x, j, L)
        p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = a.dtype.type(1)
        r0 = r1 = r2 = r3 = r4 = r5 = r6 = r7 = a.dtype.type(0)
        for i in range(L):
            d = a0[i]; r0 = d * r0 + x0[i]; p0 *= d
            d = a1[i]; r1 = d * r1 + x1[i]; p1 *= d
            d = a2[i]; r2 = d * r2 + x2[i]; p2 *= d
            d = a3[i]; r3 = d * r3 + x3[i]; p3 *= d
            d = a4[i]; r4 = d * r4 + x4[i]; p4 *= d
            d = a5[i]; r5 = d * r5 + x5[i]; p5 *= d
            d = a6[i]; r6 = d * r6 + x6[i]; p6 *= d
            d = a7[i]; r7 = d * r7 + x7[i]; p7 *= d
        P[j, 0], P[j + 1, 0], P[j + 2, 0], P[j + 3, 0] = p0, p1, p2, p3
        P[j + 4, 0], P[j + 5, 0], P[j + 6, 0], P[j + 7, 0] = p4, p5, p6, p7
        R[j, 0], R[j + 1, 0], R[j + 2, 0], R[j + 3, 0] = r0, r1, r2, r3
        R[j + 4, 0], R[j + 5, 0], R[j + 6, 0], R[j + 7, 0] = r4, r5, r6, r7


@nb.njit(inline="always")
def _chunks(v, j, L):
    """The 8 chunks j .. j+7 of length L of a 1-D view."""
    return (v[j * L:(j + 1) * L], v[(j + 1) * L:(j + 2) * L], v[(j + 2) * L:(j + 3) * L],
            v[(j + 3) * L:(j + 4) * L], v[(j + 4) * L:(j + 5) * L], v[(j + 5) * L:(j + 6) * L],
            v[(j + 6) * L:(j + 7) * L], v[(j + 7) * L:(j + 8) * L])


@nb.njit(cache=True, nogil=True)
def carries(P, R, c, cin):
    """cin[j] <- carry entering chunk j (starting from c); c <- carry leaving the last chunk.

    A carry of exactly 0 leaves R, the chunk's scan from 0, which is what the serial loop computes
    there; ``P * 0`` would turn a gate product that overflowed to inf into NaN."""
    C, N = P.shape
    for j in range(C):
        for n in range(N):
            cin[j, n] = c[n]
            c[n] = R[j, n] if c[n] == 0 else P[j, n] * c[n] + R[j, n]


@nb.njit(cache=True, nogil=True, parallel=True)
def rescan(a, ao, x, xo, h, ho, rs, N, L, C, cin):
    """h <- scan of every chunk from its carry-in."""
    for j in nb.prange(C):
        o = j * L * rs
        scan(a, ao + o, x, xo + o, h, ho + o, rs, L, N, cin[j].copy())


@nb.njit(cache=True, nogil=True, parallel=True)
def rescan_1(a, x, h, L, C, cin):
    """``rescan`` for one channel (1-D views, C % 8 == 0)."""
    for g in nb.prange(C // K1):
        j = g * K1
        a0, a1, a2, a3, a4, a5, a6, a7 = _chunks(a, j, L)
        x0, x1, x2, x3, x4, x5, x6, x7 = _chunks(x, j, L)
        h0, h1, h2, h3, h4, h5, h6, h7 = _chunks(h, j, L)
        c0, c1, c2, c3 = cin[j, 0], cin[j + 1, 0], cin[j + 2, 0], cin[j + 3, 0]
        c4, c5, c6, c7 = cin[j + 4, 0], cin[j + 5, 0], cin[j + 6, 0], cin[j + 7, 0]
        for i in range(L):
            c0 = a0[i] * c0 + x0[i]; h0[i] = c0
            c1 = a1[i] * c1 + x1[i]; h1[i] = c1
            c2 = a2[i] * c2 + x2[i]; h2[i] = c2
            c3 = a3[i] * c3 + x3[i]; h3[i] = c3
            c4 = a4[i] * c4 + x4[i]; h4[i] = c4
            c5 = a5[i] * c5 + x5[i]; h5[i] = c5
            c6 = a6[i] * c6 + x6[i]; h6[i] = c6
            c7 = a7[i] * c7 + x7[i]; h7[i] = c7


@nb.njit(cache=True, nogil=True, parallel=True)
def rescan_grad(a, ao, x, xo, hp, hpo, g, go, ga, gao, rs, N, L, C, cin):
    """g <- scan of every chunk from its carry-in, and ga <- g * hp, in the same pass."""
    for j in nb.prange(C):
        o = j * L * rs
        scan_grad(a, ao + o, x, xo + o, hp, hpo + o, g, go + o, ga, gao + o, rs, L, N, cin[j].copy())
