"""``cpu-chunked``: the paper's Algorithm 1 on the CPU cores (reduce, scan of carries, re-scan).

The sequence is processed in tiles of about ``TILE_BYTES`` per operand so that the re-scan reads
a and x back from cache rather than memory; within a tile, C chunks (8 per core with one channel,
interleaved in registers, 2 per core otherwise) are reduced and re-scanned in parallel by Numba
threads. Positions left over after ``C * L`` run serially. ``numba.set_num_threads`` sets the cores.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from . import _threads

_threads.start()       # before any parallel kernel is compiled or loaded

from . import _numba_chunked as _k  # noqa: E402
from . import _numba_driver as _drv  # noqa: E402
from . import cpu_serial as _serial  # noqa: E402

DTYPES, DEVICES = _drv.DTYPES, _drv.DEVICES
TILE_BYTES = 4 << 20      # per operand and tile
MIN_CHUNK_BYTES = 4096    # below this a chunk is not worth a thread


def plan(n: int, N: int, itemsize: int) -> tuple[int, int]:
    """(C, L): C chunks of L positions for n positions, or (0, 0) when too short to split."""
    C = nb.get_num_threads() * (_k.K1 if N == 1 else 2)
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
    tile = max(1, TILE_BYTES // (N * A.itemsize))
    q0 = 0
    while q0 < n:
        m = min(tile, n - q0)
        C, L = plan(m, N, A.itemsize)
        if C:
            P, R, cin = np.empty((C, N), A.dtype), np.empty((C, N), A.dtype), np.empty((C, N), A.dtype)
            if N == 1:
                av, xv, hv = (o.view1(B, p + q0, C * L) for B, p in (a, x, h))
                _k.reduce_1(av, xv, L, C, P, R)
                _k.carries(P, R, c, cin)
                _k.rescan_1(av, xv, hv, L, C, cin)
                if hp is not None:
                    np.multiply(hv, o.view1(hp[0], hp[1] + q0, C * L),
                                out=o.view1(ga[0], ga[1] + q0, C * L))
            else:
                ba, bx, bh = o.base(pa + q0), o.base(px + q0), o.base(ph + q0)
                _k.reduce(A, ba, X, bx, rs, N, L, C, P, R)
                _k.carries(P, R, c, cin)
                if hp is None:
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
