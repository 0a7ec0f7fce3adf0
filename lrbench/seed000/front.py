"""The information front: up to which step is sign(x_0) linearly decodable from the states?

For each step t, a linear probe (the difference of the two classes' mean states, threshold halfway)
is fitted on the even-numbered training sequences and scored on the odd ones. Step t is decodable
when that held-out probe accuracy is at least ``THRESHOLD``. The front is the number of leading
steps that are all decodable: 0 = not even the first state carries the sign, N = all of them do.
"""
from __future__ import annotations

import torch

THRESHOLD = 0.9


def probe_accuracy(states: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """states (M, N, n), label (M,) in {0, 1} -> held-out probe accuracy per step, (N,)."""
    if states.ndim != 3 or label.shape != states.shape[:1]:
        raise ValueError(f"arguments 'states' (M, N, n) and 'label' (M,) must agree; got "
                         f"{tuple(states.shape)} and {tuple(label.shape)}")
    fit, test = slice(0, None, 2), slice(1, None, 2)
    s, y = states[fit].double(), label[fit].bool()
    if y.all() or not y.any():
        raise ValueError("argument 'label': the probe's half needs both classes")
    mu1, mu0 = s[y].mean(0), s[~y].mean(0)                          # (N, n)
    w, b = mu1 - mu0, -0.5 * ((mu1 * mu1).sum(-1) - (mu0 * mu0).sum(-1))
    score = (states[test].double() * w).sum(-1) + b                  # (M/2, N)
    return ((score > 0) == label[test].bool()[:, None]).double().mean(0)


def front(states: torch.Tensor, label: torch.Tensor) -> int:
    ok = (probe_accuracy(states, label) >= THRESHOLD).tolist()
    return ok.index(False) if False in ok else len(ok)
