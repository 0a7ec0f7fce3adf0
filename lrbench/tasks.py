"""Problem 2b of Hochreiter & Schmidhuber (1997), as in the paper's §4.

A sequence of length T: x_0 = ±e_0, then T-1 one-hot vectors drawn uniformly with replacement
from p dimensions; the label is the sign of x_0. Represented as token ids ``idx (T, B)`` with
``idx[0] = 0`` and a ``sign (B,)`` of ±1 (the model multiplies its first embedded step by it), so
a batch costs 8 bytes per step, not p floats.
"""

from __future__ import annotations

import torch


def problem_2b(
    T: int,
    batch: int,
    p: int = 128,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
):
    """(idx (T, B) int64, sign (B,) ±1 float, label (B,) int64 in {0, 1}), generated on ``device``."""
    if T < 1 or batch < 1 or p < 1:
        raise ValueError(f"arguments T, batch, p must be >= 1; got T={T}, batch={batch}, p={p}")
    idx = torch.randint(0, p, (T, batch), generator=generator, device=device)
    idx[0] = 0
    label = torch.randint(0, 2, (batch,), generator=generator, device=device)
    sign = label.to(torch.float32) * 2 - 1
    return idx, sign, label
