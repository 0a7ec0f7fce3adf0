"""Numba kernels for the serial scan over flat, C-contiguous buffers of time-major ``(T, N)`` rows.

Every operand is addressed as ``buf[base + p * rs + n]`` for processing position ``p`` and channel
``n``, with one row stride ``rs`` (``+N`` forward in time, ``-N`` reversed). Shifted and reversed
views therefore cost nothing, and all index arithmetic is int64 (numba's ``intp``).

``scan``:      h[p] = a[p] * h[p-1] + x[p], from the carry ``c`` (updated in place).
``scan_grad``: the same recurrence for the backward's g, plus ``ga[p] = g[p] * hp[p]``.
These loop over a runtime N with the carries in memory; for N <= 8 the serial backend uses the
chain kernels of ``chains`` instead, which keep them in registers.

A row is computed into the carries first and stored to h in a second loop, so that no loop both
loads a and x and stores h: interleaved, the three streams ran well below a one-core copy's
bandwidth whenever h sat at the same offset within a 4 KiB page as a and x, as separately
allocated tensors do.

Reversed, the rows are visited at falling addresses, each read upwards, a saw-tooth the hardware
prefetcher follows badly; so the row ``PREFETCH_BYTES`` ahead in processing order is prefetched.
What both choices give today is measured by the kernel ladder (asv ``bench_kernels.Ladder``,
``rows`` forward and reverse, beside ``copy``), tabled in results/tables/kernels_<machine>.md.
"""

from __future__ import annotations

import numba as nb
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

PREFETCH_BYTES = 8192  # how far ahead a reversed scan prefetches, per operand


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the caches to fetch ``arr[idx]`` (llvm.prefetch: read, keep in every level)."""

    def codegen(context, builder, signature, args):
        data = context.make_array(arr)(context, builder, args[0]).data
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0"
        )
        builder.call(
            fn, [builder.bitcast(builder.gep(data, [args[1]]), i8p), i32(0), i32(3), i32(1)]
        )
        return context.get_dummy_value()

    return types.void(arr, types.intp), codegen


@nb.njit(inline="always")
def _ahead(p, rs, T, N, itemsize):
    """At position p of a reversed scan: the offset of the row PREFETCH_BYTES ahead in processing
    order, and the channels of its cache lines; an empty range forward or past the end."""
    q = p + max(1, PREFETCH_BYTES // (N * itemsize))
    return q * rs, range(0, N if rs < 0 and q < T else 0, max(1, 64 // itemsize))


@nb.njit(inline="always")
def _row(buf, base, p, rs, N):
    """The N channels of position p."""
    r = base + p * rs
    return buf[r : r + N]


@nb.njit(cache=True, nogil=True)
def scan(a, ao, x, xo, h, ho, rs, T, N, c):
    if N == 1:  # one chain: the carry in a register
        v = c[0]
        for p in range(T):
            v = a[ao + p * rs] * v + x[xo + p * rs]
            h[ho + p * rs] = v
        c[0] = v
        return
    for p in range(T):
        r, lines = _ahead(p, rs, T, N, a.itemsize)
        for n in lines:
            _prefetch(a, ao + r + n)
            _prefetch(x, xo + r + n)
            _prefetch(h, ho + r + n)
        ar, xr, hr = _row(a, ao, p, rs, N), _row(x, xo, p, rs, N), _row(h, ho, p, rs, N)
        for n in range(N):
            c[n] = ar[n] * c[n] + xr[n]
        for n in range(N):  # stored in a loop of its own: see the docstring
            hr[n] = c[n]


@nb.njit(cache=True, nogil=True)
def scan_grad(a, ao, x, xo, hp, hpo, g, go, ga, gao, rs, T, N, c):
    if N == 1:
        v = c[0]
        for p in range(T):
            v = a[ao + p * rs] * v + x[xo + p * rs]
            g[go + p * rs] = v
            ga[gao + p * rs] = v * hp[hpo + p * rs]
        c[0] = v
        return
    for p in range(T):
        r, lines = _ahead(p, rs, T, N, a.itemsize)
        for n in lines:
            _prefetch(a, ao + r + n)
            _prefetch(x, xo + r + n)
            _prefetch(hp, hpo + r + n)
            _prefetch(g, go + r + n)
            _prefetch(ga, gao + r + n)
        ar, xr, pr = _row(a, ao, p, rs, N), _row(x, xo, p, rs, N), _row(hp, hpo, p, rs, N)
        gr, gar = _row(g, go, p, rs, N), _row(ga, gao, p, rs, N)
        for n in range(N):
            c[n] = ar[n] * c[n] + xr[n]
        for n in range(N):
            v = c[n]
            gr[n] = v
            gar[n] = v * pr[n]
