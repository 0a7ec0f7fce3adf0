"""quasi-DEER (Gonzalez et al., NeurIPS 2024): solve s_t - f(s_{t-1}, x_t) = 0 for all t at once
by Newton iterations whose Jacobian is replaced by its diagonal, so that each iteration is one
elementwise linear recurrence, ``lrbench.linear_recurrence``:

    s^{k+1}_t = d_t s^{k+1}_{t-1} + (f(s^k_{t-1}, x_t) - d_t s^k_{t-1}),  d_t = diag ∂f/∂s at s^k_{t-1}.

Each iteration fixes at least one more step, so T iterations are exact (the Jacobi bound).
"""

from __future__ import annotations

import torch

from lrbench import linear_recurrence


def quasi_deer(
    cell,
    x,
    h0,
    *,
    tol: float = 1e-7,
    max_iters: int | None = None,
    init=None,
    backend: str = "auto",
):
    """States (T, B, n) of ``cell`` over ``x`` (T, B, m) from ``h0`` (B, n), and the iterations used.

    ``init`` is a starting guess (T, B, n) (zeros by default): a warm start such as a state table.
    Stops when no state moves by more than ``tol`` or after ``max_iters`` (default T) iterations.
    """
    T = x.shape[0]
    if h0.shape != x.shape[1:-1] + (h0.shape[-1],):
        raise ValueError(
            f"argument 'h0' must be (B, n) matching x {tuple(x.shape)}; got {tuple(h0.shape)}"
        )
    h = (
        torch.zeros(x.shape[:-1] + (h0.shape[-1],), dtype=h0.dtype, device=h0.device)
        if init is None
        else init
    )
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


def _reverse_recurrence(d, c, backend):
    """λ_t = d_t λ_{t+1} + c_t for t = T-1 … 0 (λ_T = 0), as one forward linear recurrence."""
    return linear_recurrence(d.flip(0), c.flip(0), dim=0, backend=backend).flip(0)


def quasi_deer_adjoint(
    out, prev, d, g, *, tol: float = 1e-7, max_iters: int | None = None, backend: str = "auto"
):
    """The adjoint of the roll-out, λ_t = dL/dh_t = g_t + J_{t+1}ᵀ λ_{t+1}, and the iterations used.

    ``out = f(prev, x)`` is the cell applied to every step at once with ``prev`` (T, B, n) a leaf
    that requires grad (the graph is kept); ``d`` (T, B, n) is diag ∂f/∂prev at every step; ``g``
    is ∂L/∂h_t of the loss alone. Each quasi-Newton iteration is one vector-Jacobian product over
    all steps plus one reversed ``linear_recurrence`` with the diagonal; like the forward solve it
    is exact after at most T iterations, from the last step back.
    """
    T = g.shape[0]
    shift = lambda v: torch.cat([v[1:], torch.zeros_like(v[:1])])  # row t <- row t+1
    d_next = shift(d)  # diag J_{t+1}
    lam, iters = g, 0
    for iters in range(1, (max_iters or T) + 1):
        vjp = torch.autograd.grad(out, prev, lam, retain_graph=True)[0]  # J_tᵀ λ_t at row t
        new = _reverse_recurrence(d_next, g + shift(vjp) - d_next * shift(lam), backend)
        moved = (new - lam).abs().max().item()
        lam = new
        if moved <= tol:
            break
    return lam, iters


def deer_backward(cell, readout_loss, x, h0, *, tol: float = 1e-6, backend: str = "auto"):
    """One DEER-style training gradient, parallel in time both ways: states by ``quasi_deer``, the
    adjoint by ``quasi_deer_adjoint``, then one vector-Jacobian product of the cell over all steps
    gives the weights' gradients. ``readout_loss(h_last)`` returns the loss of the final state and
    must take its own parameters' gradients itself (it is called with a leaf). Accumulates into
    ``.grad`` like ``backward()``; returns (loss, forward iterations, backward iterations)."""
    with torch.no_grad():
        h, fwd = quasi_deer(cell, x, h0, tol=tol, backend=backend)
    prev = torch.cat([h0[None], h[:-1]]).detach().requires_grad_()
    out = cell(prev, x)
    last = out[-1].detach().requires_grad_()
    loss = readout_loss(last)
    loss.backward()
    with torch.no_grad():
        d = cell.step_and_diag(prev, x)[1]
    g = torch.zeros_like(out)
    g[-1] = last.grad
    lam, bwd = quasi_deer_adjoint(out, prev, d, g, tol=tol, backend=backend)
    out.backward(lam)
    return loss.detach(), fwd, bwd
