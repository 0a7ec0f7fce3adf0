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
    if cu.ndim != 1 or cu.numel() < 2 or cu.dtype.is_floating_point or cu.is_complex() \
            or cu.dtype == torch.bool or cu.device.type == "meta":
        raise ValueError(f"argument 'cu_seqlens' must be a 1-d integer tensor [0, ..., total_T] of "
                         f"at least 2 offsets; got shape {tuple(cu.shape)}, dtype {cu.dtype}, "
                         f"device {cu.device}")
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
    """(a, x) of one scan over the packed time axis 0 that restarts every sequence from its h0.

    The gate at a start becomes 0 (``where``, so an inf or NaN there cannot leak into the previous
    sequence as 0 * inf) and ``a[s] * h0_b`` joins ``x[s]``, as the serial loop computes it: with
    no h0 that is ``a[s] * 0``, NaN for a NaN or inf gate, like the loop's."""
    lengths = cu[1:] - cu[:-1]
    T = a.shape[0]
    if T == 0:
        return a, x
    pos = (cu[1:] - 1) if reverse else cu[:-1]
    pos = pos.clamp(0, T - 1)             # an empty sequence's position is unused (masked below)
    nonempty = lengths > 0
    flag = torch.zeros(T, dtype=torch.int64, device=a.device).index_add_(0, pos, nonempty.long())
    tail = [1] * (a.ndim - 1)
    a_reset = torch.where(flag.view(-1, *tail) > 0, torch.zeros((), dtype=a.dtype, device=a.device), a)
    gate = torch.where(nonempty.view(-1, *tail), a.index_select(0, pos), torch.zeros((), dtype=a.dtype,
                                                                                       device=a.device))
    state = h0 if h0 is not None else torch.zeros_like(gate)
    return a_reset, x.index_add(0, pos, gate * state)


def repair(h, a, x, h0, cu: torch.Tensor, reverse: bool, scan):
    """h, or, when a neighbour's state at a sequence boundary is non-finite, every sequence scanned
    alone: a zero gate cannot clear an inf or NaN state (0 * inf is NaN), so the packed result would
    let that sequence see its neighbour, forward and backward. The check costs one ``isfinite``
    over B rows; the loop over sequences runs only then. ``scan(a, x, h0)`` is the call's scan."""
    T = h.shape[0]
    if T == 0 or torch.compiler.is_compiling():
        return h
    starts, ends = cu[:-1], cu[1:]
    boundary = ends if reverse else starts - 1        # the neighbour's row a reset multiplies
    inside = (ends > starts) & (boundary >= 0) & (boundary < T)
    rows = h.detach().index_select(0, boundary.clamp(0, T - 1)).reshape(len(starts), -1)
    if not bool((inside & ~torch.isfinite(rows).all(dim=1)).any()):
        return h
    return torch.cat([scan(a[s:e], x[s:e], h0[b] if h0 is not None else None)
                      for b, (s, e) in enumerate(zip(starts.tolist(), ends.tolist()))])
