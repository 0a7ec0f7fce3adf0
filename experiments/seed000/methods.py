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

TRANSITIONS = 4096  # per step, for random-transition batches
DEER_TOL = 1e-5  # fp32 fixed-point tolerance of the forward and adjoint solves
CONVERGE = -1  # the hybrid's ``sweeps`` for "sweep until the table is the roll-out"


def _x_time_major(x):
    return x.transpose(0, 1)  # (M, N, p) -> (N, M, p)


class Method:
    """``x (M, N, m)``, ``y (M,)``: the fixed training set. ``batch``: sequences per step, drawn
    without replacement from it each step (all M when None or >= M); ``fresh(seed)``, when given,
    returns a new batch ``(x, y)`` every step instead (the fixed set then only serves ``states``).
    ``loss(output, y, reduction=...)`` and ``out`` (the readout's width) come from the task;
    ``seed`` seeds the batches."""

    epochs_per_step = 1.0

    def __init__(
        self, cell, n, x, y, lr, *, loss=F.cross_entropy, out=2, batch=None, fresh=None, seed=0
    ):
        self.cell, self.x, self.y, self.n, self.loss, self.out = cell, x, y, n, loss, out
        self.batch = len(x) if batch is None else min(batch, len(x))
        self.fresh, self.seed, self.draws = fresh, seed, 0
        self.gen = torch.Generator().manual_seed(seed)
        if fresh is None:
            self.epochs_per_step = self.batch / len(x)

    def next_batch(self):
        """(ids into the fixed set or None for fresh sequences, x, y) of this step."""
        if self.fresh is not None:
            self.draws += 1
            return (None, *self.fresh(1_000_003 * self.seed + self.draws))
        if self.batch == len(self.x):
            return torch.arange(len(self.x)), self.x, self.y
        ids = torch.randperm(len(self.x), generator=self.gen)[: self.batch]
        return ids, self.x[ids], self.y[ids]

    def logits(self, x):
        raise NotImplementedError

    def states(self):
        with torch.no_grad():
            return roll_out(
                self.cell, _x_time_major(self.x), self.x.new_zeros(len(self.x), self.n)
            ).transpose(0, 1)

    def extras(self) -> dict:
        return {}


class Table(Method):
    """``sweeps``: quasi-DEER sweeps of the step's table rows before each step (0: the seed's
    method; ``CONVERGE``: until no state moves by more than ``DEER_TOL``)."""

    def __init__(
        self, cell, n, x, y, lr, *, freeze=1, mu=1.0, random_transitions=False, sweeps=0, **kw
    ):
        super().__init__(cell, n, x, y, lr, **kw)
        if self.fresh is not None:
            raise ValueError("argument 'fresh': a state table needs a fixed training set")
        M, N = x.shape[:2]
        self.model = TableModel(cell, n, M, N, classes=self.out, loss=self.loss)
        self.opt = FrozenTableOptimizer(self.model, lr, freeze=freeze)
        self.mu, self.random, self.sweeps, self.ids = (
            mu,
            random_transitions,
            sweeps,
            torch.arange(M),
        )
        self.sweep_iters = []
        if random_transitions:
            self.epochs_per_step = TRANSITIONS / (M * N)

    def step(self):
        m = self.model
        ids, x, y = self.next_batch()
        if self.sweeps:  # hybrid: quasi-DEER sweeps, warm-started
            with torch.no_grad():
                h, iters = quasi_deer(
                    m.cell,
                    _x_time_major(x),
                    m.h0.expand(len(ids), -1),
                    init=m.table[ids].transpose(0, 1),
                    tol=DEER_TOL,
                    max_iters=None if self.sweeps == CONVERGE else self.sweeps,
                )
                m.table[ids] = h.transpose(0, 1)
            self.sweep_iters.append(iters)
        if self.random:
            M, N = m.table.shape[:2]
            ids, ts = torch.randint(0, M, (TRANSITIONS,)), torch.randint(0, N, (TRANSITIONS,))
            ce, cons = m.transition_losses(ids, ts, self.x, self.y, self.mu)
        else:
            ce, cons, _ = m.losses(ids, self.x, self.y, self.mu)
        (ce + cons).backward()
        self.opt.step()

    def logits(self, x):
        return self.model.roll_out_logits(x)

    def states(self):
        return self.model.table.detach()

    def extras(self):
        out = dict(
            max_residual=self.model.max_residual(self.x), table_bytes=self.model.table.numel() * 4
        )
        if self.out > 1:  # a classifier: its accuracy by table lookup
            with torch.no_grad():
                lookup = self.model.losses(self.ids, self.x, self.y, self.mu)[2]
            out["train_lookup_acc"] = (lookup.argmax(-1) == self.y).float().mean().item()
        if self.sweep_iters:
            out["sweeps_per_step"] = sum(self.sweep_iters) / len(self.sweep_iters)
        return out


class RollOut(Method):
    """BPTT through the sequential roll-out; ``window`` detaches the state every ``window`` steps."""

    def __init__(self, cell, n, x, y, lr, *, window=None, **kw):
        super().__init__(cell, n, x, y, lr, **kw)
        self.readout, self.window = nn.Linear(n, self.out), window
        self.opt = torch.optim.Adam([*cell.parameters(), *self.readout.parameters()], lr=lr)

    def _final(self, x):
        return roll_out(self.cell, _x_time_major(x), x.new_zeros(len(x), self.n), self.window)[-1]

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        _, x, y = self.next_batch()
        self.loss(self.readout(self._final(x)), y).backward()
        self.opt.step()

    def logits(self, x):
        with torch.no_grad():
            return self.readout(self._final(x))


class Deer(RollOut):
    """The exact BPTT gradient computed parallel in time: quasi-DEER for the states, quasi-DEER on
    the adjoint for the gradient. Counts the fixed-point iterations (its sequential depth)."""

    def __init__(self, cell, n, x, y, lr, **kw):
        super().__init__(cell, n, x, y, lr, **kw)
        self.iters = []

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        _, x, y = self.next_batch()
        xt = _x_time_major(x)
        _, fwd, bwd = deer_backward(
            self.cell,
            lambda h: self.loss(self.readout(h), y),
            xt,
            xt.new_zeros(xt.shape[1], self.n),
            tol=DEER_TOL,
        )
        self.iters.append(fwd + bwd)
        self.opt.step()

    def extras(self):
        return dict(deer_iters_per_step=sum(self.iters) / max(len(self.iters), 1))


def make(method: str, cell, n, x, y, lr, mu=1.0, *, sweeps=1, freeze=1, **kw) -> Method:
    """The ``Method`` called ``method`` (see the module's docstring) for training set ``x (M, N, p)``;
    ``sweeps`` and ``freeze`` set the hybrid's sweeps per step and table freeze; ``kw`` goes to
    ``Method`` (batch, fresh sequences, the task's loss and readout width, seed)."""
    N = x.shape[1]
    if method.startswith("table-rand-K"):
        return Table(
            cell,
            n,
            x,
            y,
            lr,
            freeze=int(method[len("table-rand-K") :]),
            mu=mu,
            random_transitions=True,
            **kw,
        )
    if method.startswith("table-K"):
        return Table(cell, n, x, y, lr, freeze=int(method[len("table-K") :]), mu=mu, **kw)
    if method == "hybrid":
        return Table(cell, n, x, y, lr, mu=mu, sweeps=sweeps, freeze=freeze, **kw)
    if method == "deer":
        return Deer(cell, n, x, y, lr, **kw)
    if method == "bptt":
        return RollOut(cell, n, x, y, lr, **kw)
    if method == "tbptt":
        return RollOut(cell, n, x, y, lr, window=max(N // 2, 1), **kw)
    if method.startswith("tbptt-w"):
        return RollOut(cell, n, x, y, lr, window=int(method[len("tbptt-w") :]), **kw)
    raise ValueError(
        f"argument 'method' must be table-K<k>, table-rand-K<k>, hybrid, deer, bptt, tbptt "
        f"or tbptt-w<k>; got {method!r}"
    )
