"""quasi-DEER (Gonzalez et al., NeurIPS 2024): solve s_t - f(s_{t-1}, x_t) = 0 for all t at once
by Newton iterations whose Jacobian is replaced by its diagonal, so that each iteration is one
elementwise linear recurrence, ``lrbench.linear_recurrence``:

    s^{k+1}_t = d_t s^{k+1}_{t-1} + (f(s^k_{t-1}, x_t) - d_t s^k_{t-1}),  d_t = diag ∂f/∂s at s^k_{t-1}.

Each iteration fixes at least one more step, so T iterations are exact (the Jacobi bound).
"""
from __future__ import annotations

import torch

from ..api import linear_recurrence


def quasi_deer(cell, x, h0, *, tol: float = 1e-7, max_iters: int | None = None, init=None,
               backend: str = "auto"):
    """States (T, B, n) of ``cell`` over ``x`` (T, B, m) from ``h0`` (B, n), and the iterations used.

    ``init`` is a starting guess (T, B, n) (zeros by default): a warm start such as a state table.
    Stops when no state moves by more than ``tol`` or after ``max_iters`` (default T) iterations.
    """
    T = x.shape[0]
    if h0.shape != x.shape[1:-1] + (h0.shape[-1],):
        raise ValueError(f"argument 'h0' must be (B, n) matching x {tuple(x.shape)}; got {tuple(h0.shape)}")
    h = torch.zeros(x.shape[:-1] + (h0.shape[-1],), dtype=h0.dtype, device=h0.device) if init is None else init
    iters = 0
    for iters in range(1, (max_iters or T) + 1):
        prev = torch.cat([h0[None], h[:-1]])
        y, d = cell.step_and_diag(prev, x)
        new = linear_recurrence(d, y - d * prev, h0, dim=0, backend=backend)
        moved = (new - h).abs().max().item()
        h = new
        if moved <= tol:
            break
    return h, iters
