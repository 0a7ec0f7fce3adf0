"""The seed-000 tasks as (inputs (M, N, m), targets (M,)) with their loss and their "correct" test.

``2b``: problem 2b (Hochreiter & Schmidhuber 1997) with alphabet p: x_0 = ±e_0, then one-hot
symbols; the target is the sign of x_0 (2 classes, cross-entropy). ``adding``: the adding problem
of the same paper: each step carries a value in [0, 1) and a marker; one marker sits in the first
tenth of the sequence, the other in its second half, and the target is the sum of the two marked
values (one output, squared error). A prediction is correct within ``ADDING_TOLERANCE`` (their
criterion, 0.04); a constant guess of 1 is correct on about 6 % of sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from lrbench.tasks import problem_2b

ADDING_TOLERANCE = 0.04


def data_2b(M: int, N: int, p: int, seed: int):
    """Problem 2b as one-hot inputs (M, N, p) with x_0 = ±e_0, and labels (M,)."""
    idx, sign, label = problem_2b(N, M, p, torch.Generator().manual_seed(seed))
    x = F.one_hot(idx.T, p).float()
    x[:, 0] *= sign[:, None]
    return x, label


def data_adding(M: int, N: int, seed: int):
    """The adding problem: inputs (M, N, 2) (value, marker) and targets (M,)."""
    if N < 2:
        raise ValueError(f"argument 'N' of the adding problem must be >= 2 (two markers); got {N}")
    g = torch.Generator().manual_seed(seed)
    value = torch.rand(M, N, generator=g)
    first = torch.randint(0, max(N // 10, 1), (M,), generator=g)
    second = torch.randint(N // 2, N, (M,), generator=g).clamp(min=1)
    second = torch.where(second == first, torch.full_like(second, N - 1), second)
    marker = torch.zeros(M, N)
    rows = torch.arange(M)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    return torch.stack([value, marker], -1), value[rows, first] + value[rows, second]


@dataclass(frozen=True)
class Task:
    name: str
    m: int  # input width
    out: int  # readout width
    sample: Callable  # (M, N, seed) -> (x (M, N, m), y (M,))
    loss: Callable  # (readout output, y, reduction) -> loss
    correct: Callable  # (readout output, y) -> bool (B,)


def _mse(out, y, reduction="mean"):
    return F.mse_loss(out[:, 0], y, reduction=reduction)


def make(name: str, p: int = 8) -> Task:
    if name == "2b":
        return Task(
            "2b",
            p,
            2,
            lambda M, N, seed: data_2b(M, N, p, seed),
            F.cross_entropy,
            lambda out, y: out.argmax(-1) == y,
        )
    if name == "adding":
        return Task(
            "adding",
            2,
            1,
            data_adding,
            _mse,
            lambda out, y: (out[:, 0] - y).abs() < ADDING_TOLERANCE,
        )
    raise ValueError(f"argument 'task' must be 2b or adding; got {name!r}")
