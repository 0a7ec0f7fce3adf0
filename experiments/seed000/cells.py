"""Non-linear cells h' = f(h, x), time-parallel: each evaluates every step given its previous state
and returns the diagonal of ∂f/∂h, which quasi-DEER needs (an elementwise linear recurrence)."""

from __future__ import annotations

import torch
from torch import nn


class TanhCell(nn.Module):
    """h' = tanh(W h + U x + b)."""

    def __init__(self, m: int, n: int):
        super().__init__()
        self.W, self.U = nn.Linear(n, n, bias=False), nn.Linear(m, n)

    def forward(self, h, x):
        return torch.tanh(self.W(h) + self.U(x))

    def step_and_diag(self, h, x):
        y = self(h, x)
        return y, (1 - y * y) * torch.diagonal(self.W.weight)


class GRUCell(nn.Module):
    """torch.nn.GRUCell's equations: r, z gates, n = tanh(W_in x + r (W_hn h + b_hn)),
    h' = (1 - z) n + z h; inputs of any leading shape."""

    def __init__(self, m: int, n: int):
        super().__init__()
        self.n = n
        self.ih, self.hh = nn.Linear(m, 3 * n), nn.Linear(n, 3 * n)

    def _parts(self, h, x):
        ir, iz, in_ = self.ih(x).chunk(3, -1)
        hr, hz, hn = self.hh(h).chunk(3, -1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        return r, z, torch.tanh(in_ + r * hn), hn

    def forward(self, h, x):
        r, z, nn_, _ = self._parts(h, x)
        return (1 - z) * nn_ + z * h

    def step_and_diag(self, h, x):
        r, z, nn_, hn = self._parts(h, x)
        w = torch.diagonal(self.hh.weight.view(3, self.n, self.n), dim1=1, dim2=2)  # (3, n)
        dr, dz = r * (1 - r) * w[0], z * (1 - z) * w[1]
        dn = (1 - nn_ * nn_) * (dr * hn + r * w[2])
        return (1 - z) * nn_ + z * h, (h - nn_) * dz + (1 - z) * dn + z


def roll_out(cell, x, h0, window: int | None = None):
    """The sequential evaluation: h_t = f(h_{t-1}, x_t), x (T, B, m), h0 (B, n) -> (T, B, n).
    ``window`` truncates back-propagation: the state is detached every ``window`` steps."""
    out, h = [], h0
    for t in range(x.shape[0]):
        if window and t % window == 0:
            h = h.detach()
        h = cell(h, x[t])
        out.append(h)
    return torch.stack(out)
