"""``reference``: the float64 serial loop, the ground truth every backend is tested against.

Not a benchmark subject. Computes in float64 on the CPU with NumPy and returns the input's dtype and
device; pass float64 inputs to get float64 results.
"""

from __future__ import annotations

import numpy as np
import torch

from .scan._common import ANY_FLOAT, into

DTYPES = ANY_FLOAT
DEVICES = None  # any: inputs are copied to the CPU


def _np64(t):
    """float64 (complex128 for complex input) on the CPU."""
    wide = torch.complex128 if t.is_complex() else torch.float64
    return t.detach().to("cpu", wide).resolve_conj().numpy()


def forward64(a, x, h0, reverse):
    """h (float64 ndarray) of ``h[t] = a[t] h[t-1] + x[t]`` (``h[t+1]`` when reverse)."""
    a, x = _np64(a), _np64(x)
    T, N = a.shape
    h = np.empty((T, N), dtype=a.dtype)
    c = _np64(h0) if h0 is not None else np.zeros(N, dtype=a.dtype)
    for t in range(T - 1, -1, -1) if reverse else range(T):
        c = a[t] * c + x[t]
        h[t] = c
    return h


def forward(a, x, h0, reverse, out=None):
    return into(torch.from_numpy(forward64(a, x, h0, reverse)).to(x.device, x.dtype), out)


def backward(a, h, h0, gh, reverse):
    an, hn, ghn = _np64(a), _np64(h), _np64(gh)
    T, N = an.shape
    wide = np.result_type(an, ghn)
    g, ga = np.empty((T, N), dtype=wide), np.empty((T, N), dtype=wide)
    h0n = _np64(h0) if h0 is not None else np.zeros(N, dtype=wide)
    order = range(T) if reverse else range(T - 1, -1, -1)
    c, prev_t = np.zeros(N, dtype=wide), None
    for t in order:
        c = (an[prev_t] * c if prev_t is not None else 0.0) + ghn[t]
        g[t] = c
        tp = t + 1 if reverse else t - 1
        ga[t] = c * (hn[tp] if 0 <= tp < T else h0n)
        prev_t = t
    first = T - 1 if reverse else 0
    gh0 = an[first] * g[first] if h0 is not None else None

    def back(v, like):
        return (
            None
            if v is None
            else torch.from_numpy(np.ascontiguousarray(v)).to(like.device, like.dtype)
        )

    return back(ga, a), back(g, gh), back(gh0, a)
