"""``cpu-chunked``: the paper's Algorithm 1 on the CPU cores (reduce, scan of carries, re-scan).

The sequence is processed in tiles of about ``TILE_BYTES`` per operand, each cut into chunks for
P cores (``threads``: the calling thread and helpers; ``torch.set_num_threads`` sets P). Positions
left over after the chunks run serially. Two schedules:

* **Chains** (fewer than ``CHAINS_BELOW`` channels, not a multiple of W): every (chunk, channel)
  chain is bound by the latency of ``a * h + x``, so C chunks give each core W = 8 chains to
  interleave in registers (``chains``). Every core reduces its chains, the carries are
  scanned, every core re-scans its chains: the paper's three passes, two hand-offs a tile.
* **Pipeline** (a multiple of W channels, or ``CHAINS_BELOW`` and more): the scan runs at memory
  bandwidth, so every pass over the data counts. Chunk 0 has L0 positions and chunks 1..P have L:
  core 0 scans chunks 0 and 1 as cpu-serial would; core i >= 1 reduces chunk i, takes the carry
  entering it from core i-1 (as soon as that is known), hands on the carry entering chunk i+1 and
  scans chunk i+1 from it. Only chunks 1..P-1 are read twice, and no core waits at a barrier. A
  reduce moves 2 streams where a scan moves 3, so chunk 0 has ``HEAD`` = 2/3 of the others'
  length: core 1 has reduced chunk 1 when core 0 has scanned chunk 0 (the measured sweep of
  ``HEAD`` is asv's ``bench_kernels.PipelineHead``, tabled by ``lrbench report`` in
  ``results/tables/kernels_<machine>.md``).
"""

from __future__ import annotations

import threading
from functools import partial
from math import gcd

import numpy as np

from . import chains as _ch
from . import chunks as _k
from . import driver as _drv
from . import serial as _serial
from . import threads as _threads

DTYPES, DEVICES = _drv.DTYPES, _drv.DEVICES
# per operand and tile. A tile costs at least one hand-off to the helper threads (asv
# bench_kernels.HandOff: tens of microseconds), so tiles are large; the re-scan then reads a and x
# back from memory, not cache.
TILE_BYTES = 64 << 20
MIN_CHUNK_BYTES = 4096  # below this a chunk is not worth a thread
CHAINS_BELOW = 16  # channels
HEAD = 2 / 3  # L0 / L, the pipeline's chunk 0 against the others


def pipelined(N: int) -> bool:
    return N % _ch.W == 0 or N >= CHAINS_BELOW


def plan(n: int, N: int, itemsize: int) -> tuple[int, int]:
    """Chains: (C, L), C chunks of L positions for n positions, or (0, 0) when too short to split."""
    C = _threads.cores() * (_ch.W // gcd(N, _ch.W))
    L = _length(n // C, N * itemsize)
    return (C, L) if L else (0, 0)


def pipeline_plan(n: int, N: int, itemsize: int, head: float = HEAD) -> tuple[int, int]:
    """Pipeline: (L0, L), chunk 0 of L0 positions then one chunk of L per core, or (0, 0) when
    there is one core or the chunks would be too short."""
    P = _threads.cores()
    L = _length(int(n / (P + head)), N * itemsize) if P > 1 else 0
    return (n - P * L, L) if L else (0, 0)


def _length(L: int, row: int) -> int:
    if L * row < MIN_CHUNK_BYTES:
        return 0
    if (L * row) % 4096 == 0:
        # 16 streams a multiple of 4 KiB apart land in the same L1 sets and ran 3x slower
        # (measured): stagger the chunk starts
        L -= max(1, 64 // row)
    return L


def _at(op, s):
    """Operand ``op`` (flat buffer, position of its first element) moved on by s positions."""
    return None if op is None else (op[0], op[1] + s)


def scan_range(o, a, x, h, n, c, hp=None, ga=None, *, step=None):
    """The engine (``driver``): tiles of positions, each by ``step`` (``_pipeline`` where
    ``pipelined``, else ``_chains``; the kernel ladder passes either), the rest serially."""
    with _threads.LOCK:
        tile = max(1, TILE_BYTES // (o.N * a[0].itemsize))
        q0 = 0
        while q0 < n:
            m = min(tile, n - q0)
            at = partial(_at, s=q0)
            done = (step or (_pipeline if pipelined(o.N) else _chains))(
                o, at(a), at(x), at(h), m, c, at(hp), at(ga)
            )
            if done < m:  # the rest of the tile, serially
                at = partial(_at, s=q0 + done)
                _serial.scan_range(o, at(a), at(x), at(h), m - done, c, at(hp), at(ga))
            q0 += m


def _chains(o, a, x, h, m, c, hp, ga):
    """The three passes over positions [0, m) for few channels; returns how many it scanned."""
    (A, pa), (X, px), (H, ph) = a, x, h
    N, rs = o.N, o.rs
    C, L = plan(m, N, A.itemsize)
    if not C:
        return 0
    Q = C * N
    P, R, cin = np.empty((C, N), A.dtype), np.empty((C, N), A.dtype), np.empty((C, N), A.dtype)
    ba, bx, bh = o.base(pa), o.base(px), o.base(ph)
    tiny = np.finfo(A.dtype).tiny
    G, cores = (Q + _ch.W - 1) // _ch.W, _threads.cores()
    shares = [(G * t // cores, G * (t + 1) // cores) for t in range(cores)]
    _threads.run(
        [
            partial(_ch.reduce, A, ba, X, bx, rs, N, L, Q, P.reshape(-1), R.reshape(-1), tiny, *g)
            for g in shares
        ]
    )
    first = A[np.add.outer([o.base(pa + j * L) for j in range(C)], np.arange(N))]
    c0 = c.copy()
    exact = _k.carries(P, R, first, c, cin, tiny / np.finfo(A.dtype).eps)
    if not (exact and np.isfinite(cin).all() and np.isfinite(c).all()):
        # A chunk's gate product overflowed under a nonzero state, or an input is not finite,
        # or a flushed product met a vanishing state (see chunks.carries): the carries
        # may differ from the serial loop's, so the tile runs serially.
        c[:] = c0
        return 0
    cin = cin.reshape(-1)
    if hp is None:
        tasks = [partial(_ch.rescan, A, ba, X, bx, H, bh, rs, N, L, Q, cin, *g) for g in shares]
    else:
        (HP, php), (GA, pga) = hp, ga
        tasks = [
            partial(
                _ch.rescan_grad,
                A,
                ba,
                X,
                bx,
                HP,
                o.base(php),
                H,
                bh,
                GA,
                o.base(pga),
                rs,
                N,
                L,
                Q,
                cin,
                *g,
            )
            for g in shares
        ]
    _threads.run(tasks)
    return C * L


class CarryRelay:
    """The pipeline's protocol: each core hands the carry entering the next chunk to the next core.

        core 0   scan chunk 0 --put(0)--> scan chunk 1
        core 1   reduce chunk 1 --take(0)--> fold --put(1)--> scan chunk 2
        core 2   reduce chunk 2 ----------take(1)--> fold --put(2)--> scan chunk 3
        ...      (core i: reduce chunk i, take(i-1), fold, put(i), scan chunk i+1)

    Slot i is put exactly once, by core i, and taken by core i + 1, which waits for it. ``None``
    means "no carry": the core failed, or its carry may be wrong (an overflowing product, a
    non-finite state); a core that takes ``None`` puts ``None``, so everything after it is left to
    the caller, which scans it serially. ``put`` stores a copy, so the putter may go on scanning
    from its own array (a link that handed on the array it kept scanning gave later links a carry
    that had moved on)."""

    def __init__(self, n: int):
        self._carry = [None] * n
        self._ready = [threading.Event() for _ in range(n)]

    def put(self, i: int, carry) -> None:
        self._carry[i] = None if carry is None else carry.copy()
        self._ready[i].set()

    def take(self, i: int):
        self._ready[i].wait()
        return self._carry[i]


def _pipeline(o, a, x, h, m, c, hp, ga, head=HEAD):
    """The pipeline over positions [0, m) for many channels (``CarryRelay`` between the cores);
    returns how many positions it scanned."""
    L0, L = pipeline_plan(m, o.N, a[0].itemsize, head)
    if not L:
        return 0
    (A, pa), N, cores = a, o.N, _threads.cores()
    dtype = A.dtype
    tiny = np.finfo(dtype).tiny
    relay = CarryRelay(cores)
    out = []

    def span(s, n, cc):  # positions [s, s + n), serially from carry cc
        at = partial(_at, s=s)
        _serial.scan_range(o, at(a), at(x), at(h), n, cc, at(hp), at(ga))

    def head():  # core 0: chunks 0 and 1
        done = None
        try:
            span(0, L0, c)
            done = c
        finally:
            relay.put(0, done)
        span(L0, L, c)

    def link(i):  # core i >= 1: chunk i reduced, chunk i + 1 scanned
        s = L0 + (i - 1) * L
        good = None
        try:
            P, R = np.empty((1, N), dtype), np.empty((1, N), dtype)
            _reduce(o, a, x, s, L, P[0], R[0], tiny)
            cin = relay.take(i - 1)
            if cin is not None:
                cc = cin.copy()
                first = A[o.base(pa + s) + np.arange(N)].reshape(1, N)
                if (
                    _k.carries(P, R, first, cc, np.empty((1, N), dtype), tiny / np.finfo(dtype).eps)
                    and np.isfinite(cin).all()
                    and np.isfinite(cc).all()
                ):
                    good = cc  # else (see _chains) the rest is scanned serially
        finally:
            relay.put(i, good)
        if good is not None:
            span(s + L, L, good)
            if i == cores - 1:
                out.append(good)

    _threads.run([head] + [partial(link, i) for i in range(1, cores)])
    if not out:
        return L0 + L  # c is exact up to here: core 0 scanned it
    c[:] = out[0]
    return L0 + cores * L


def _reduce(o, a, x, s, L, P, R, tiny):
    """P, R <- gate product and scan from 0 of positions [s, s + L)."""
    (A, pa), (X, px) = a, x
    ba, bx = o.base(pa + s), o.base(px + s)
    if o.N < CHAINS_BELOW:  # whole groups of W adjacent channels
        _ch.reduce(A, ba, X, bx, o.rs, o.N, L, o.N, P, R, tiny, 0, o.N // _ch.W)
    else:
        _k.reduce(A, ba, X, bx, o.rs, o.N, L, P, R, tiny)


forward, backward = _drv.bind(scan_range)
