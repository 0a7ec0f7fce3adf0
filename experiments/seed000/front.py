"""The information front: up to which step is sign(x_0) linearly decodable from the states?

For each step t, a linear probe (ridge regression of ±1 on the state and a bias, ridge ``RIDGE``
times the mean feature power) is fitted on the even-numbered training sequences and scored on the
odd ones. Step t is decodable
when that held-out probe accuracy is at least ``THRESHOLD``. The front is the number of leading
steps that are all decodable: 0 = not even the first state carries the sign, N = all of them do.
"""

from __future__ import annotations

import torch

THRESHOLD = 0.9
RIDGE = 1e-3


def probe_accuracy(states: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """states (M, N, n), label (M,) in {0, 1} -> held-out probe accuracy per step, (N,)."""
    if states.ndim != 3 or label.shape != states.shape[:1]:
        raise ValueError(
            f"arguments 'states' (M, N, n) and 'label' (M,) must agree; got "
            f"{tuple(states.shape)} and {tuple(label.shape)}"
        )
    fit, test = slice(0, None, 2), slice(1, None, 2)
    s, y = states[fit].double(), label[fit].bool()
    if y.all() or not y.any():
        raise ValueError("argument 'label': the probe's half needs both classes")
    X = torch.cat([s, torch.ones_like(s[..., :1])], -1).transpose(0, 1)  # (N, M/2, n+1)
    gram = X.transpose(1, 2) @ X  # (N, n+1, n+1)
    power = gram.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None]
    eye = torch.eye(X.shape[-1], dtype=X.dtype)
    w = torch.linalg.solve(
        gram + RIDGE * power * eye, X.transpose(1, 2) @ (2.0 * y.double() - 1)[None, :, None]
    )
    t = states[test].double()
    score = (torch.cat([t, torch.ones_like(t[..., :1])], -1).transpose(0, 1) @ w)[
        ..., 0
    ]  # (N, M/2)
    return ((score > 0) == label[test].bool()[None, :]).double().mean(1)


def front(states: torch.Tensor, label: torch.Tensor) -> int:
    ok = (probe_accuracy(states, label) >= THRESHOLD).tolist()
    return ok.index(False) if False in ok else len(ok)
