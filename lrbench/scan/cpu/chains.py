"""Numba kernels that scan W = 8 independent chains in lock-step, carries in registers.

With few channels a scan is bound by the latency of each ``a * h + x`` chain, and a loop over a
runtime N keeps its carries in memory (the compiler cannot rule out aliasing), so every step pays
a store-to-load round trip. Here a *chain* is one channel of one chunk: chain ``q`` is channel
``q % N`` of chunk ``q // N``, whose position ``i`` (0 <= i < L) sits at flat offset
``base + (q // N) * L * rs + q % N + i * rs`` of each operand (see ``rows`` for the flat
addressing). A group of W consecutive chains runs per core, W carries in registers; the last group
of Q chains repeats chain Q - 1 in its spare lanes (same values, same thread, so harmless).
Indices are cast to unsigned so that Numba emits no negative-index wraparound per access.

``reduce`` also forms each chain's gate product P. With gates below 1 it underflows, and a
subnormal P never reaches 0 (round to nearest keeps the smallest subnormal for |a| > 1/2), so every
later multiply is a microcode assist: 30-60x slower on this Xeon (measured, 65 against 0.5-2 ns
an element). P is therefore flushed to zero every ``FLUSH`` steps once |P| < the dtype's smallest
normal number; the carry then loses at most ``tiny * |c|`` (|a| <= 1), far below rounding.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..._compat import slp  # LLVM's SLP vectorizer while compiling (Numba internals)

W = 8  # chains in flight per core
FLUSH = 64  # steps between flushes of a subnormal gate product
BLOCK_BYTES = 4 << 10  # per operand: the rows ``scan_blocked`` runs group by group (fits L1)


@nb.njit(inline="always")
def _offsets(q, Q, N, L, rs):
    """Flat offsets (relative to an operand's base) of chains q .. q+W-1, clamped to Q - 1."""
    return (
        _off(min(q, Q - 1), N, L, rs),
        _off(min(q + 1, Q - 1), N, L, rs),
        _off(min(q + 2, Q - 1), N, L, rs),
        _off(min(q + 3, Q - 1), N, L, rs),
        _off(min(q + 4, Q - 1), N, L, rs),
        _off(min(q + 5, Q - 1), N, L, rs),
        _off(min(q + 6, Q - 1), N, L, rs),
        _off(min(q + 7, Q - 1), N, L, rs),
    )


@nb.njit(inline="always")
def _off(q, N, L, rs):
    return (q // N) * L * rs + q % N


@nb.njit(inline="always")
def _u(i):
    return np.uint64(i)


@nb.njit(inline="always")
def _ftz(v, tiny):
    return v if abs(v) >= tiny else v - v


@nb.njit(inline="always")
def _load8(c, q, Q):
    m = Q - 1
    return (
        c[min(q, m)],
        c[min(q + 1, m)],
        c[min(q + 2, m)],
        c[min(q + 3, m)],
        c[min(q + 4, m)],
        c[min(q + 5, m)],
        c[min(q + 6, m)],
        c[min(q + 7, m)],
    )


@nb.njit(inline="always")
def _store8(c, q, Q, v0, v1, v2, v3, v4, v5, v6, v7):
    m = Q - 1
    c[min(q, m)], c[min(q + 1, m)], c[min(q + 2, m)], c[min(q + 3, m)] = v0, v1, v2, v3
    c[min(q + 4, m)], c[min(q + 5, m)], c[min(q + 6, m)], c[min(q + 7, m)] = v4, v5, v6, v7


@nb.njit(inline="always")
def _reduce_group(a, ao, x, xo, rs, N, L, Q, q, P, R, tiny):
    if N % W == 0:
        o = _off(q, N, L, rs)
        _reduce_lanes(
            a,
            ao,
            x,
            xo,
            rs,
            L,
            Q,
            q,
            P,
            R,
            tiny,
            o,
            o + 1,
            o + 2,
            o + 3,
            o + 4,
            o + 5,
            o + 6,
            o + 7,
        )
    else:
        o0, o1, o2, o3, o4, o5, o6, o7 = _offsets(q, Q, N, L, rs)
        _reduce_lanes(a, ao, x, xo, rs, L, Q, q, P, R, tiny, o0, o1, o2, o3, o4, o5, o6, o7)


@nb.njit(inline="always")
def _reduce_lanes(a, ao, x, xo, rs, L, Q, q, P, R, tiny, o0, o1, o2, o3, o4, o5, o6, o7):
    d = xo - ao
    p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = a.dtype.type(1)
    r0 = r1 = r2 = r3 = r4 = r5 = r6 = r7 = a.dtype.type(0)
    for b in range(0, L, FLUSH):
        s = ao + b * rs
        for _ in range(b, min(b + FLUSH, L)):
            e = a[_u(s + o0)]
            r0 = e * r0 + x[_u(s + d + o0)]
            p0 *= e
            e = a[_u(s + o1)]
            r1 = e * r1 + x[_u(s + d + o1)]
            p1 *= e
            e = a[_u(s + o2)]
            r2 = e * r2 + x[_u(s + d + o2)]
            p2 *= e
            e = a[_u(s + o3)]
            r3 = e * r3 + x[_u(s + d + o3)]
            p3 *= e
            e = a[_u(s + o4)]
            r4 = e * r4 + x[_u(s + d + o4)]
            p4 *= e
            e = a[_u(s + o5)]
            r5 = e * r5 + x[_u(s + d + o5)]
            p5 *= e
            e = a[_u(s + o6)]
            r6 = e * r6 + x[_u(s + d + o6)]
            p6 *= e
            e = a[_u(s + o7)]
            r7 = e * r7 + x[_u(s + d + o7)]
            p7 *= e
            s += rs
        p0, p1, p2, p3 = _ftz(p0, tiny), _ftz(p1, tiny), _ftz(p2, tiny), _ftz(p3, tiny)
        p4, p5, p6, p7 = _ftz(p4, tiny), _ftz(p5, tiny), _ftz(p6, tiny), _ftz(p7, tiny)
    _store8(P, q, Q, p0, p1, p2, p3, p4, p5, p6, p7)
    _store8(R, q, Q, r0, r1, r2, r3, r4, r5, r6, r7)


@nb.njit(inline="always")
def _scan_group(a, ao, x, xo, h, ho, rs, N, L, Q, q, c):
    if N % W == 0:
        o = _off(q, N, L, rs)
        _scan_lanes(
            a, ao, x, xo, h, ho, rs, L, Q, q, c, o, o + 1, o + 2, o + 3, o + 4, o + 5, o + 6, o + 7
        )
    else:
        o0, o1, o2, o3, o4, o5, o6, o7 = _offsets(q, Q, N, L, rs)
        _scan_lanes(a, ao, x, xo, h, ho, rs, L, Q, q, c, o0, o1, o2, o3, o4, o5, o6, o7)


@nb.njit(inline="always")
def _scan_lanes(a, ao, x, xo, h, ho, rs, L, Q, q, c, o0, o1, o2, o3, o4, o5, o6, o7):
    dx, dh = xo - ao, ho - ao
    c0, c1, c2, c3, c4, c5, c6, c7 = _load8(c, q, Q)
    s = ao
    for _ in range(L):
        c0 = a[_u(s + o0)] * c0 + x[_u(s + dx + o0)]
        h[_u(s + dh + o0)] = c0
        c1 = a[_u(s + o1)] * c1 + x[_u(s + dx + o1)]
        h[_u(s + dh + o1)] = c1
        c2 = a[_u(s + o2)] * c2 + x[_u(s + dx + o2)]
        h[_u(s + dh + o2)] = c2
        c3 = a[_u(s + o3)] * c3 + x[_u(s + dx + o3)]
        h[_u(s + dh + o3)] = c3
        c4 = a[_u(s + o4)] * c4 + x[_u(s + dx + o4)]
        h[_u(s + dh + o4)] = c4
        c5 = a[_u(s + o5)] * c5 + x[_u(s + dx + o5)]
        h[_u(s + dh + o5)] = c5
        c6 = a[_u(s + o6)] * c6 + x[_u(s + dx + o6)]
        h[_u(s + dh + o6)] = c6
        c7 = a[_u(s + o7)] * c7 + x[_u(s + dx + o7)]
        h[_u(s + dh + o7)] = c7
        s += rs
    _store8(c, q, Q, c0, c1, c2, c3, c4, c5, c6, c7)


@nb.njit(inline="always")
def _scan_grad_group(a, ao, x, xo, hp, hpo, g, go, ga, gao, rs, N, L, Q, q, c):
    if N % W == 0:
        o = _off(q, N, L, rs)
        _scan_grad_lanes(
            a,
            ao,
            x,
            xo,
            hp,
            hpo,
            g,
            go,
            ga,
            gao,
            rs,
            L,
            Q,
            q,
            c,
            o,
            o + 1,
            o + 2,
            o + 3,
            o + 4,
            o + 5,
            o + 6,
            o + 7,
        )
    else:
        o0, o1, o2, o3, o4, o5, o6, o7 = _offsets(q, Q, N, L, rs)
        _scan_grad_lanes(
            a, ao, x, xo, hp, hpo, g, go, ga, gao, rs, L, Q, q, c, o0, o1, o2, o3, o4, o5, o6, o7
        )


@nb.njit(inline="always")
def _scan_grad_lanes(
    a, ao, x, xo, hp, hpo, g, go, ga, gao, rs, L, Q, q, c, o0, o1, o2, o3, o4, o5, o6, o7
):
    dx, dp, dg, dga = xo - ao, hpo - ao, go - ao, gao - ao
    c0, c1, c2, c3, c4, c5, c6, c7 = _load8(c, q, Q)
    s = ao
    for _ in range(L):
        c0 = a[_u(s + o0)] * c0 + x[_u(s + dx + o0)]
        g[_u(s + dg + o0)] = c0
        ga[_u(s + dga + o0)] = c0 * hp[_u(s + dp + o0)]
        c1 = a[_u(s + o1)] * c1 + x[_u(s + dx + o1)]
        g[_u(s + dg + o1)] = c1
        ga[_u(s + dga + o1)] = c1 * hp[_u(s + dp + o1)]
        c2 = a[_u(s + o2)] * c2 + x[_u(s + dx + o2)]
        g[_u(s + dg + o2)] = c2
        ga[_u(s + dga + o2)] = c2 * hp[_u(s + dp + o2)]
        c3 = a[_u(s + o3)] * c3 + x[_u(s + dx + o3)]
        g[_u(s + dg + o3)] = c3
        ga[_u(s + dga + o3)] = c3 * hp[_u(s + dp + o3)]
        c4 = a[_u(s + o4)] * c4 + x[_u(s + dx + o4)]
        g[_u(s + dg + o4)] = c4
        ga[_u(s + dga + o4)] = c4 * hp[_u(s + dp + o4)]
        c5 = a[_u(s + o5)] * c5 + x[_u(s + dx + o5)]
        g[_u(s + dg + o5)] = c5
        ga[_u(s + dga + o5)] = c5 * hp[_u(s + dp + o5)]
        c6 = a[_u(s + o6)] * c6 + x[_u(s + dx + o6)]
        g[_u(s + dg + o6)] = c6
        ga[_u(s + dga + o6)] = c6 * hp[_u(s + dp + o6)]
        c7 = a[_u(s + o7)] * c7 + x[_u(s + dx + o7)]
        g[_u(s + dg + o7)] = c7
        ga[_u(s + dga + o7)] = c7 * hp[_u(s + dp + o7)]
        s += rs
    _store8(c, q, Q, c0, c1, c2, c3, c4, c5, c6, c7)


@slp
@nb.njit(cache=True, nogil=True)
def reduce(a, ao, x, xo, rs, N, L, Q, P, R, tiny, g0, g1):
    """P[q], R[q] <- (gate product, scan from 0) of the chains q < Q in groups g0 .. g1-1 of W
    (P, R flat, length Q). One thread's share: ``chunked`` spreads the groups over threads."""
    for g in range(g0, g1):
        _reduce_group(a, ao, x, xo, rs, N, L, Q, g * W, P, R, tiny)


@slp
@nb.njit(cache=True, nogil=True)
def rescan(a, ao, x, xo, h, ho, rs, N, L, Q, c, g0, g1):
    """h <- scan of the chains of groups g0 .. g1-1 from their carries c[q]; c[q] <- carry out."""
    for g in range(g0, g1):
        _scan_group(a, ao, x, xo, h, ho, rs, N, L, Q, g * W, c)


@slp
@nb.njit(cache=True, nogil=True)
def rescan_grad(a, ao, x, xo, hp, hpo, g, go, ga, gao, rs, N, L, Q, c, g0, g1):
    """``rescan`` into g, and ga <- g * hp in the same pass."""
    for k in range(g0, g1):
        _scan_grad_group(a, ao, x, xo, hp, hpo, g, go, ga, gao, rs, N, L, Q, k * W, c)


@slp
@nb.njit(cache=True, nogil=True)
def scan(a, ao, x, xo, h, ho, rs, T, N, c):
    """The serial scan of N <= W channels on one core (one chunk of T positions)."""
    _scan_group(a, ao, x, xo, h, ho, rs, N, T, N, 0, c)


@slp
@nb.njit(cache=True, nogil=True)
def scan_grad(a, ao, x, xo, hp, hpo, g, go, ga, gao, rs, T, N, c):
    _scan_grad_group(a, ao, x, xo, hp, hpo, g, go, ga, gao, rs, N, T, N, 0, c)


@slp
@nb.njit(cache=True, nogil=True)
def scan_blocked(a, ao, x, xo, h, ho, rs, T, N, c):
    """The serial scan of N = k * W channels: blocks of rows, each block one group of W adjacent
    channels at a time (carries in registers), so that the block is still in L1 for the next group."""
    B = max(1, BLOCK_BYTES // (N * a.itemsize))
    for p0 in range(0, T, B):
        s = p0 * rs
        for g in range(N // W):
            _scan_group(a, ao + s, x, xo + s, h, ho + s, rs, N, min(B, T - p0), N, g * W, c)


@slp
@nb.njit(cache=True, nogil=True)
def scan_grad_blocked(a, ao, x, xo, hp, hpo, g, go, ga, gao, rs, T, N, c):
    B = max(1, BLOCK_BYTES // (N * a.itemsize))
    for p0 in range(0, T, B):
        s = p0 * rs
        for k in range(N // W):
            _scan_grad_group(
                a,
                ao + s,
                x,
                xo + s,
                hp,
                hpo + s,
                g,
                go + s,
                ga,
                gao + s,
                rs,
                N,
                min(B, T - p0),
                N,
                k * W,
                c,
            )
