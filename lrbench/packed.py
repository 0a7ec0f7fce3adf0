"""Packed variable-length batches: B sequences back to back on the time axis, split by ``cu_seqlens``.

A sequence start is a reset: ``h[s] = a[s] h0_b + x[s]`` forgets ``h[s-1]``. That is one scan over
the whole packed axis with the gate at every start set to 0 and ``a[s] h0_b`` added to ``x[s]``, so
every backend runs it in one call (no loop over sequences) and autograd differentiates the two
index operations. Reversed, the reset sits at each sequence's last step. Costs one copy of a and x.
"""
from __future__ import annotations

import torch


def check_cu_seqlens(cu, total_T: int, device: torch.device) -> torch.Tensor:
    """The offsets as an int64 tensor on ``device``; errors name ``cu_seqlens`` and what was seen."""
    if not isinstance(cu, torch.Tensor):
        raise TypeError(f"argument 'cu_seqlens' must be a torch.Tensor of int64 offsets; got "
                        f"{type(cu).__name__}")
    if cu.ndim != 1 or cu.numel() < 2 or cu.dtype.is_floating_point or cu.is_complex():
        raise ValueError(f"argument 'cu_seqlens' must be a 1-d integer tensor [0, ..., total_T] of "
                         f"at least 2 offsets; got shape {tuple(cu.shape)}, dtype {cu.dtype}")
    first, last = int(cu[0]), int(cu[-1])
    if first != 0 or last != total_T:
        raise ValueError(f"argument 'cu_seqlens' must start at 0 and end at total_T = {total_T} "
                         f"(the time axis of a and x); got {first} ... {last}")
    steps = cu[1:] - cu[:-1]
    if bool((steps < 0).any()):
        i = int(torch.nonzero(steps < 0)[0])
        raise ValueError(f"argument 'cu_seqlens' must be non-decreasing; got {int(cu[i])} then "
                         f"{int(cu[i + 1])} at positions {i}, {i + 1}")
    return cu.to(device=device, dtype=torch.int64)


def reset_at_starts(a, x, h0, cu: torch.Tensor, reverse: bool):
    """(a, x) of one scan over the packed time axis 0 that restarts every sequence from its h0."""
    lengths = cu[1:] - cu[:-1]
    T = a.shape[0]
    if T == 0:
        return a, x
    pos = (cu[1:] - 1) if reverse else cu[:-1]
    pos = pos.clamp(0, T - 1)             # an empty sequence's position is unused (masked below)
    nonempty = (lengths > 0).view(-1, *([1] * (a.ndim - 1)))
    flag = torch.zeros(T, dtype=torch.int64, device=a.device).index_add_(0, pos, nonempty.view(-1).long())
    a_reset = a * (flag == 0).view(-1, *([1] * (a.ndim - 1)))     # a NaN or inf gate stays NaN
    if h0 is None:
        return a_reset, x
    carry = torch.where(nonempty, a.index_select(0, pos) * h0, torch.zeros_like(h0))
    return a_reset, x.index_add(0, pos, carry)
