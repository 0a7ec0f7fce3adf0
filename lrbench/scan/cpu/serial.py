"""``cpu-serial``: the compiled serial scan on one core, time-major, vectorised over channels.

The CPU counterpart of the paper's serial CUDA loop: one pass, reading a and x once and writing h
once (12 bytes per fp32 element), so for many channels it runs at memory bandwidth; with one
channel it is bound by the latency of the ``a * h + x`` chain (one per channel, N <= 8 of them in
registers at once: ``chains``).
"""

from __future__ import annotations

from . import chains as _ch
from . import driver as _drv
from . import rows as _rows

DTYPES, DEVICES = _drv.DTYPES, _drv.DEVICES
# Channel counts where ``chains.scan_blocked`` beats the row kernel: the ladder's rows and
# chains-blocked columns (asv ``bench_kernels.Ladder``; results/tables/kernels_<machine>.md).
BLOCKED = (16,)


def scan_range(o, a, x, h, n, c, hp=None, ga=None):
    (A, pa), (X, px), (H, ph) = a, x, h
    # 2-8 channels: all N chains in registers (one chain alone runs faster in the row kernel's
    # N = 1 loop: the chain kernel would fill its 8 lanes with copies of it); 16: two groups of 8 in
    # turn over blocks of rows (see BLOCKED)
    if 1 < o.N <= _ch.W:
        scan, scan_grad = _ch.scan, _ch.scan_grad
    elif o.N in BLOCKED:
        scan, scan_grad = _ch.scan_blocked, _ch.scan_grad_blocked
    else:
        scan, scan_grad = _rows.scan, _rows.scan_grad
    if hp is None:
        scan(A, o.base(pa), X, o.base(px), H, o.base(ph), o.rs, n, o.N, c)
    else:
        (HP, php), (GA, pga) = hp, ga
        scan_grad(
            A,
            o.base(pa),
            X,
            o.base(px),
            HP,
            o.base(php),
            H,
            o.base(ph),
            GA,
            o.base(pga),
            o.rs,
            n,
            o.N,
            c,
        )


forward, backward = _drv.bind(scan_range)
