"""``cpu-serial``: the compiled serial scan on one core, time-major, vectorised over channels.

The CPU counterpart of the paper's serial CUDA loop: one pass, reading a and x once and writing h
once (12 bytes per fp32 element), so for many channels it runs at memory bandwidth; with one
channel it is bound by the latency of the ``a * h + x`` chain (one per channel, N <= 8 of them in
registers at once: ``_numba_chains``).
"""
from __future__ import annotations

from . import _numba_chains as _ch
from . import _numba_driver as _drv
from . import _numba_serial as _rows

DTYPES, DEVICES = _drv.DTYPES, _drv.DEVICES


def scan_range(o, a, x, h, n, c, hp=None, ga=None):
    (A, pa), (X, px), (H, ph) = a, x, h
    _k = _ch if 1 < o.N <= _ch.W else _rows   # 2-8 channels: all N chains in registers (one
    # chain alone runs faster in the row kernel's N = 1 loop: the chain kernel would fill its 8 lanes
    # with copies of it)
    if hp is None:
        _k.scan(A, o.base(pa), X, o.base(px), H, o.base(ph), o.rs, n, o.N, c)
    else:
        (HP, php), (GA, pga) = hp, ga
        _k.scan_grad(A, o.base(pa), X, o.base(px), HP, o.base(php), H, o.base(ph),
                     GA, o.base(pga), o.rs, n, o.N, c)


forward, backward = _drv.bind(scan_range)
