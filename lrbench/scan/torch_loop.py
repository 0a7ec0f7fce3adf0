"""``torch-loop``: the naive PyTorch loop over T, the baseline a user writes first.

One ``a[t] * h + x[t]`` per step on any device and floating dtype; the backward is the same loop
run in reverse over the shifted gates (paper §2.2).
"""

from __future__ import annotations

import torch

from ._common import ANY_FLOAT, backward_by_reverse_scan

DTYPES = ANY_FLOAT
DEVICES = None  # any


def forward(a, x, h0, reverse, out=None):
    T = a.shape[0]
    h = torch.empty_like(x) if out is None else out
    c = h0 if h0 is not None else torch.zeros_like(x[0])
    for t in range(T - 1, -1, -1) if reverse else range(T):
        c = torch.addcmul(x[t], a[t], c)
        h[t] = c
    return h


def backward(a, h, h0, gh, reverse):
    return backward_by_reverse_scan(forward, a, h, h0, gh, reverse)
