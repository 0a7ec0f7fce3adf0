"""The seed's method: a trainable state table, one state per transition of M training sequences.

Sequence m has inputs x[m, 0..T-1]; the table holds E[m, t], the state *after* step t; the state
before step 0 is the shared, fixed initial state h0 (a per-sequence trainable first state would
let the label hide in it). The cell is trained on all transitions at once:

    L = CE(readout(f(E[m, T-2], x[m, T-1])), y_m) + μ Σ_t ||f(E[m, t-1], x[m, t]) - E[m, t]||²

over weights and table together. With ``freeze = K > 1`` the table's values stay fixed for K
optimiser steps while its gradients accumulate, and the accumulated (averaged) gradient is applied
at each refresh, like a DQN target network. Held-out sequences are scored only by sequential
roll-out from h0 (``roll_out_logits``), never by table lookup.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cells import roll_out


class TableModel(nn.Module):
    def __init__(
        self,
        cell: nn.Module,
        n: int,
        M: int,
        T: int,
        classes: int = 2,
        init_scale: float = 0.1,
        loss=F.cross_entropy,
    ):
        """``classes`` is the readout's width and ``loss(output, y, reduction=...)`` its loss (the
        cross-entropy of ``classes`` classes by default)."""
        super().__init__()
        self.cell, self.readout, self.loss = cell, nn.Linear(n, classes), loss
        self.table = nn.Parameter(init_scale * torch.randn(M, T, n))
        self.register_buffer("h0", torch.zeros(n))

    def previous(self, ids: torch.Tensor) -> torch.Tensor:
        """The state entering each step of sequences ``ids``: (B, T, n), h0 at t = 0."""
        E = self.table[ids]
        return torch.cat([self.h0.expand(len(ids), 1, -1), E[:, :-1]], dim=1)

    def losses(self, ids, x, y, mu: float):
        """(output loss, consistency loss, table-lookup logits) on whole sequences ``ids``."""
        out = self.cell(self.previous(ids), x[ids])  # f(E[t-1], x[t]) for all t
        consistency = (out - self.table[ids]).square().sum(-1).mean()
        logits = self.readout(out[:, -1])
        return self.loss(logits, y[ids]), mu * consistency, logits

    def transition_losses(self, ids, ts, x, y, mu: float):
        """The same on random transitions (sequence ``ids[i]``, step ``ts[i]``); the output loss
        counts only transitions at the last step."""
        T = self.table.shape[1]
        prev = torch.where((ts > 0)[:, None], self.table[ids, (ts - 1).clamp(min=0)], self.h0)
        out = self.cell(prev, x[ids, ts])
        consistency = (out - self.table[ids, ts]).square().sum(-1).mean()
        last = ts == T - 1
        ce = (
            self.loss(self.readout(out[last]), y[ids[last]], reduction="sum") / len(ids)
            if last.any()
            else out.sum() * 0
        )
        return ce, mu * consistency

    @torch.no_grad()
    def max_residual(self, x) -> float:
        ids = torch.arange(self.table.shape[0])
        return (self.cell(self.previous(ids), x) - self.table).abs().max().item()

    @torch.no_grad()
    def drift(self, x) -> tuple[float, float]:
        """(largest, mean) |table - roll-out| over the training sequences ``x`` (M, T, p): how far
        the states the table holds are from the trajectory the cell actually follows."""
        ids = torch.arange(self.table.shape[0])
        gap = (
            self.table
            - roll_out(self.cell, x.transpose(0, 1), self.h0.expand(len(ids), -1)).transpose(0, 1)
        ).abs()
        return gap.max().item(), gap.mean().item()

    @torch.no_grad()
    def roll_out_logits(self, x) -> torch.Tensor:
        """Sequential evaluation from h0: x (B, T, p) -> logits (B, classes)."""
        return self.readout(
            roll_out(self.cell, x.transpose(0, 1), self.h0.expand(x.shape[0], -1))[-1]
        )


class FrozenTableOptimizer:
    """One Adam over weights and table; the table only moves every ``freeze`` steps, by the mean
    of the gradients accumulated since the last refresh."""

    def __init__(self, model: TableModel, lr: float, freeze: int = 1):
        if freeze < 1:
            raise ValueError(f"argument 'freeze' (K) must be >= 1, got {freeze}")
        self.model, self.freeze, self.steps = model, freeze, 0
        weights = [p for n, p in model.named_parameters() if n != "table"]
        self.opt = torch.optim.Adam([{"params": weights}, {"params": [model.table]}], lr=lr)

    def step(self) -> bool:
        """Apply one step after ``backward()``; returns whether the table was refreshed."""
        self.steps += 1
        table = self.model.table
        refresh = self.steps % self.freeze == 0
        held = table.grad
        if refresh:
            if held is not None:
                held.div_(self.freeze)
        else:
            table.grad = None  # Adam skips it this step; the sum is kept
        self.opt.step()
        for p in self.opt.param_groups[0]["params"]:
            p.grad = None
        table.grad = None if refresh else held
        return refresh
