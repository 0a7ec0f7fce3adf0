"""``log-space``: Heinsen's trick, h as cumulative sums in log space (valid only for a > 0).

``h[t] = A[t] (h0 + sum_{s<=t} x[s] / A[s])`` with ``A[t] = prod_{s<=t} a[s]``, evaluated stably as
``exp(logA[t] + logcumsumexp(log x[s] - logA[s]))`` separately for the positive and the negative
parts of x (and h0). Accurate when the two parts do not cancel; the price of a scan built from
library primitives. Gates a <= 0 are rejected by ``check``.
"""

from __future__ import annotations

import torch

from ._common import backward_by_reverse_scan, into

DTYPES = (torch.float32, torch.float64)
DEVICES = None  # any


def check(a, x, h0):
    bad = (a <= 0) | torch.isnan(a)
    if bool(bad.any()):
        n = int(bad.sum())
        raise ValueError(
            f"backend 'log-space' needs every gate a > 0; argument 'a' has {n} of {a.numel()} "
            f"entries <= 0 or NaN (min {a.min().item():.3g}); pick another backend"
        )


def _log_parts(v):
    ninf = torch.tensor(float("-inf"), dtype=v.dtype, device=v.device)
    return (torch.where(v > 0, v.abs().log(), ninf), torch.where(v < 0, v.abs().log(), ninf))


def forward(a, x, h0, reverse, out=None):
    if reverse:
        return into(_solve(a.flip(0), x.flip(0), h0).flip(0), out)
    return into(_solve(a, x, h0), out)


def _solve(a, x, h0):
    """In float64 whatever the input. The running sum of log a is large (about -0.8 T for sigmoid
    gates) and h comes from exp of its difference with another large sum, so float32 sums gave 10 %
    relative error at T = 2^20 (sigmoid gates, N = 1, measured); float64 sums give 2e-7 there."""
    dtype = x.dtype
    a, x = a.double(), x.double()
    if h0 is not None:  # h0 as step -1 with gate 1
        a = torch.cat([torch.ones_like(a[:1]), a])
        x = torch.cat([h0.double().unsqueeze(0), x])
    log_a = torch.cumsum(a.log(), dim=0)
    pos, neg = _log_parts(x)
    h = (torch.logcumsumexp(pos - log_a, dim=0) + log_a).exp() - (
        torch.logcumsumexp(neg - log_a, dim=0) + log_a
    ).exp()
    nan = torch.cumsum(torch.isnan(x), dim=0) > 0  # a NaN input poisons every later h
    h = torch.where(nan, torch.full_like(h, float("nan")), h)
    return (h[1:] if h0 is not None else h).to(dtype)


def backward(a, h, h0, gh, reverse):
    return backward_by_reverse_scan(forward, a, h, h0, gh, reverse)
