"""``cpu-chunked``: the paper's Algorithm 1 on the CPU cores (reduce, scan of carries, re-scan).

The sequence is processed in tiles of about ``TILE_BYTES`` per operand; within a tile, C chunks are reduced and re-scanned in
parallel by Numba threads. With fewer than ``CHAINS_BELOW`` channels every (chunk, channel) chain
is latency-bound, so C is chosen to give each core W = 8 chains to interleave in registers
(``_numba_chains``); with more, each core takes 2 chunks and vectorises over channels.
Positions left over after ``C * L`` run serially. ``numba.set_num_threads`` sets the cores.
"""
from __future__ import annotations

from math import gcd

import numba as nb
import numpy as np

from . import _threads

_threads.start()       # before any parallel kernel is compiled or loaded

from . import _numba_chains as _ch  # noqa: E402
from . import _numba_chunked as _k  # noqa: E402
from . import _numba_driver as _drv  # noqa: E402
from . import cpu_serial as _serial  # noqa: E402

DTYPES, DEVICES = _drv.DTYPES, _drv.DEVICES
# per operand and tile. Each tile costs two parallel launches, and a launch on the workqueue layer
# wakes sleeping workers: at 4 MB, cpu-chunked / cpu-serial was 1.0-1.6x at N = 1, T = 2^22 and
# 0.5x at N = 4; at 64 MB 2.1x and 1.2x (intel-xeon-2c, load 0.9), though the re-scan then reads a
# and x back from memory rather than cache.
TILE_BYTES = 64 << 20
MIN_CHUNK_BYTES = 4096    # below this a chunk is not worth a thread
CHAINS_BELOW = 16         # channels


def plan(n: int, N: int, itemsize: int) -> tuple[int, int]:
    """(C, L): C chunks of L positions for n positions, or (0, 0) when too short to split."""
    C = nb.get_num_threads() * (_ch.W // gcd(N, _ch.W) if N < CHAINS_BELOW else 2)
    L = n // C
    row = N * itemsize
    if L * row < MIN_CHUNK_BYTES:
        return 0, 0
    if (L * row) % 4096 == 0:           # stagger chunk starts across L1 sets
        L -= max(1, 64 // row)
    return C, L


def scan_range(o, a, x, h, n, c, hp=None, ga=None):
    with _threads.LOCK:
        _scan_range(o, a, x, h, n, c, hp, ga)


def _scan_range(o, a, x, h, n, c, hp, ga):
    (A, pa), (X, px), (H, ph) = a, x, h
    N, rs = o.N, o.rs
    tiny = np.finfo(A.dtype).tiny
    tile = max(1, TILE_BYTES // (N * A.itemsize))
    q0 = 0
    while q0 < n:
        m = min(tile, n - q0)
        C, L = plan(m, N, A.itemsize)
        if C:
            P, R, cin = np.empty((C, N), A.dtype), np.empty((C, N), A.dtype), np.empty((C, N), A.dtype)
            ba, bx, bh = o.base(pa + q0), o.base(px + q0), o.base(ph + q0)
            chains = N < CHAINS_BELOW
            if chains:
                _ch.reduce(A, ba, X, bx, rs, N, L, C * N, P.reshape(-1), R.reshape(-1), tiny)
            else:
                _k.reduce(A, ba, X, bx, rs, N, L, C, P, R, tiny)
            first = A[np.add.outer([o.base(pa + q0 + j * L) for j in range(C)], np.arange(N))]
            c0 = c.copy()
            exact = _k.carries(P, R, first, c, cin, tiny / np.finfo(A.dtype).eps)
            if not (exact and np.isfinite(cin).all() and np.isfinite(c).all()):
                # A chunk's gate product overflowed under a nonzero state, or an input is not
                # finite, or a flushed product met a vanishing state (see _numba_chunked.carries):
                # the carries may differ from the serial loop's, so the tile runs serially.
                c[:] = c0
                _serial.scan_range(o, (A, pa + q0), (X, px + q0), (H, ph + q0), m, c,
                                   None if hp is None else (hp[0], hp[1] + q0),
                                   None if ga is None else (ga[0], ga[1] + q0))
                q0 += m
                continue
            if chains and hp is None:
                _ch.rescan(A, ba, X, bx, H, bh, rs, N, L, C * N, cin.reshape(-1))
            elif chains:
                _ch.rescan_grad(A, ba, X, bx, hp[0], o.base(hp[1] + q0), H, bh,
                                ga[0], o.base(ga[1] + q0), rs, N, L, C * N, cin.reshape(-1))
            elif hp is None:
                _k.rescan(A, ba, X, bx, H, bh, rs, N, L, C, cin)
            else:
                _k.rescan_grad(A, ba, X, bx, hp[0], o.base(hp[1] + q0), H, bh,
                               ga[0], o.base(ga[1] + q0), rs, N, L, C, cin)
        done = C * L
        if done < m:                     # the tail of the tile, serially
            shift = q0 + done
            _serial.scan_range(o, (A, pa + shift), (X, px + shift), (H, ph + shift), m - done, c,
                               None if hp is None else (hp[0], hp[1] + shift),
                               None if ga is None else (ga[0], ga[1] + shift))
        q0 += m


forward, backward = _drv.bind(scan_range)
