"""The training methods compared by the seed-000 experiment, on one cell and one finite training set.

Every method is a ``Method`` with ``step()`` (one optimiser step), ``logits(x)`` (held-out scores by
sequential roll-out from the shared zero state, whatever the method), ``states()`` (the training
sequences' states (M, N, n) that the method itself holds: the table for table methods, the roll-out
otherwise) and ``extras()`` (what it measures about itself).

Names: ``table-K<k>`` (whole-sequence batches, table frozen for k steps), ``table-rand-K<k>``
(random-transition batches of ``TRANSITIONS`` transitions), ``hybrid`` (the table refined by one
quasi-DEER sweep before each step), ``deer`` (states and adjoint by quasi-DEER: the exact gradient,
parallel in time), ``bptt``, ``tbptt`` (window N/2) and ``tbptt-w<k>`` (window k).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cells import roll_out
from .deer import deer_backward, quasi_deer
from .table import FrozenTableOptimizer, TableModel

TRANSITIONS = 4096          # per step, for random-transition batches
DEER_TOL = 1e-5             # fp32 fixed-point tolerance of the forward and adjoint solves


def _x_time_major(x):
    return x.transpose(0, 1)                                  # (M, N, p) -> (N, M, p)


class Method:
    epochs_per_step = 1.0

    def __init__(self, cell, n, x, y, lr):
        self.cell, self.x, self.y, self.n = cell, x, y, n

    def logits(self, x):
        raise NotImplementedError

    def states(self):
        with torch.no_grad():
            return roll_out(self.cell, _x_time_major(self.x), self.x.new_zeros(len(self.x), self.n)).transpose(0, 1)

    def extras(self) -> dict:
        return {}


class Table(Method):
    def __init__(self, cell, n, x, y, lr, *, freeze=1, mu=1.0, random_transitions=False, sweep=False):
        super().__init__(cell, n, x, y, lr)
        M, N = x.shape[:2]
        self.model = TableModel(cell, n, M, N)
        self.opt = FrozenTableOptimizer(self.model, lr, freeze=freeze)
        self.mu, self.random, self.sweep, self.ids = mu, random_transitions, sweep, torch.arange(M)
        if random_transitions:
            self.epochs_per_step = TRANSITIONS / (M * N)

    def step(self):
        m = self.model
        if self.sweep:                                        # hybrid: one quasi-DEER sweep, warm-started
            with torch.no_grad():
                h, _ = quasi_deer(m.cell, _x_time_major(self.x), m.h0.expand(len(self.ids), -1),
                                  init=m.table.transpose(0, 1), max_iters=1)
                m.table.copy_(h.transpose(0, 1))
        if self.random:
            M, N = m.table.shape[:2]
            ids, ts = torch.randint(0, M, (TRANSITIONS,)), torch.randint(0, N, (TRANSITIONS,))
            ce, cons = m.transition_losses(ids, ts, self.x, self.y, self.mu)
        else:
            ce, cons, _ = m.losses(self.ids, self.x, self.y, self.mu)
        (ce + cons).backward()
        self.opt.step()

    def logits(self, x):
        return self.model.roll_out_logits(x)

    def states(self):
        return self.model.table.detach()

    def extras(self):
        with torch.no_grad():
            lookup = self.model.losses(self.ids, self.x, self.y, self.mu)[2]
        return dict(max_residual=self.model.max_residual(self.x), table_bytes=self.model.table.numel() * 4,
                    train_lookup_acc=(lookup.argmax(-1) == self.y).float().mean().item())


class RollOut(Method):
    """BPTT through the sequential roll-out; ``window`` detaches the state every ``window`` steps."""

    def __init__(self, cell, n, x, y, lr, *, window=None):
        super().__init__(cell, n, x, y, lr)
        self.readout, self.window = nn.Linear(n, 2), window
        self.opt = torch.optim.Adam([*cell.parameters(), *self.readout.parameters()], lr=lr)

    def _final(self, x):
        return roll_out(self.cell, _x_time_major(x), x.new_zeros(len(x), self.n), self.window)[-1]

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.readout(self._final(self.x)), self.y).backward()
        self.opt.step()

    def logits(self, x):
        with torch.no_grad():
            return self.readout(self._final(x))


class Deer(RollOut):
    """The exact BPTT gradient computed parallel in time: quasi-DEER for the states, quasi-DEER on
    the adjoint for the gradient. Counts the fixed-point iterations (its sequential depth)."""

    def __init__(self, cell, n, x, y, lr):
        super().__init__(cell, n, x, y, lr)
        self.iters = []

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        xt = _x_time_major(self.x)
        _, fwd, bwd = deer_backward(self.cell, lambda h: F.cross_entropy(self.readout(h), self.y), xt,
                                    xt.new_zeros(xt.shape[1], self.n), tol=DEER_TOL)
        self.iters.append(fwd + bwd)
        self.opt.step()

    def extras(self):
        return dict(deer_iters_per_step=sum(self.iters) / max(len(self.iters), 1))


def make(method: str, cell, n, x, y, lr, mu=1.0) -> Method:
    """The ``Method`` called ``method`` (see the module's docstring) for training set ``x (M, N, p)``."""
    N = x.shape[1]
    if method.startswith("table-rand-K"):
        return Table(cell, n, x, y, lr, freeze=int(method[len("table-rand-K"):]), mu=mu, random_transitions=True)
    if method.startswith("table-K"):
        return Table(cell, n, x, y, lr, freeze=int(method[len("table-K"):]), mu=mu)
    if method == "hybrid":
        return Table(cell, n, x, y, lr, mu=mu, sweep=True)
    if method == "deer":
        return Deer(cell, n, x, y, lr)
    if method == "bptt":
        return RollOut(cell, n, x, y, lr)
    if method == "tbptt":
        return RollOut(cell, n, x, y, lr, window=max(N // 2, 1))
    if method.startswith("tbptt-w"):
        return RollOut(cell, n, x, y, lr, window=int(method[len("tbptt-w"):]))
    raise ValueError(f"argument 'method' must be table-K<k>, table-rand-K<k>, hybrid, deer, bptt, tbptt "
                     f"or tbptt-w<k>; got {method!r}")
