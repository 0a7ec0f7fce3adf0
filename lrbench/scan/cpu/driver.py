"""Forward and fused backward for the Numba backends, over any engine with ``scan_range``.

An engine scans positions ``[0, n)`` of an :class:`Order`, each operand given as (flat buffer,
position of its first element): ``h = scan(a, x)`` from carry ``c`` (updated in place), and with
``hp``/``ga`` also ``ga = h * hp``. The backward (paper §2.2) runs against the forward direction:
``g[p] = a[p-1] g[p-1] + gh[p]``, ``ga[p] = g[p] h_prev[p]`` with ``h_prev[p] = h[p+1]`` (``h0`` at
the end); the first and last positions are done here row-wise, the rest by the engine in one pass.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from .flat import Order, flat

DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)
DEVICES = ("cpu",)


def forward(engine, a, x, h0, reverse, out=None):
    T, N = a.shape
    h = torch.empty_like(x) if out is None else out
    A = flat(a)
    c = h0.detach().numpy().copy() if h0 is not None else np.zeros(N, A.dtype)
    engine.scan_range(Order(T, N, reverse), (A, 0), (flat(x), 0), (flat(h), 0), T, c)
    return h


def backward(engine, a, h, h0, gh, reverse):
    T, N = a.shape
    ga, gx = torch.empty_like(a), torch.empty_like(gh)
    A, H, GH, GA, G = flat(a), flat(h), flat(gh), flat(ga), flat(gx)
    h0n = h0.detach().numpy() if h0 is not None else np.zeros(N, A.dtype)
    o = Order(T, N, not reverse)
    c = o.row(GH, 0).copy()  # g at position 0
    o.row(G, 0)[:] = c
    o.row(GA, 0)[:] = c * (o.row(H, 1) if T > 1 else h0n)
    if T > 2:
        engine.scan_range(o, (A, 0), (GH, 1), (G, 1), T - 2, c, hp=(H, 2), ga=(GA, 1))
    if T > 1:
        c = o.row(A, T - 2) * c + o.row(GH, T - 1)
        o.row(G, T - 1)[:] = c
        o.row(GA, T - 1)[:] = c * h0n
    first = T - 1 if reverse else 0
    gh0 = a[first] * gx[first] if h0 is not None else None
    return ga, gx, gh0


def bind(scan_range):
    """(forward, backward) of a backend whose engine is ``scan_range``."""
    engine = SimpleNamespace(scan_range=scan_range)

    def fwd(a, x, h0, reverse, out=None):
        return forward(engine, a, x, h0, reverse, out)

    def bwd(a, h, h0, gh, reverse):
        return backward(engine, a, h, h0, gh, reverse)

    return fwd, bwd
