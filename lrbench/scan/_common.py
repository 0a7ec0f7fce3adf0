"""Helpers shared by the backends: the backward as a reverse scan of the forward kernel.

Every backend works on time-major ``(T, N)`` contiguous tensors of one dtype and device and
exposes ``forward(a, x, h0, reverse) -> h`` and ``backward(a, h, h0, gh, reverse) -> (ga, gx, gh0)``.
"""

from __future__ import annotations

import torch

# Every floating and complex dtype: what the generic backends (reference, torch-loop) take.
ANY_FLOAT = (
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
)


def into(h: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """h, or h copied into ``out`` when given (for backends that cannot write in place)."""
    return h if out is None else out.copy_(h)


def shifted_gates(a: torch.Tensor, reverse: bool) -> torch.Tensor:
    """Gates of the backward recurrence, as a scan in the direction ``not reverse``.

    Forward ``h[t] = a[t] h[t-1] + x[t]`` has backward ``g[t] = a[t+1] g[t+1] + gh[t]`` (paper §2.2):
    a reverse scan whose gate at t is a[t+1]. The gate entering the first step of that scan
    multiplies a zero carry, so any finite value does; 1 keeps log-space backends valid.
    """
    one = torch.ones_like(a[:1])
    return torch.cat([a[1:], one]) if not reverse else torch.cat([one, a[:-1]])


def previous_states(h: torch.Tensor, h0: torch.Tensor | None, reverse: bool) -> torch.Tensor:
    """``h[t-1]`` (``h[t+1]`` when reverse) with ``h0`` (or 0) at the first step."""
    first = h0.unsqueeze(0) if h0 is not None else torch.zeros_like(h[:1])
    return torch.cat([first, h[:-1]]) if not reverse else torch.cat([h[1:], first])


def backward_by_reverse_scan(forward, a, h, h0, gh, reverse):
    """The paper's backward through any forward kernel: g = scan(shifted a, gh) in the other
    direction, ``gx = g``, ``ga = g * h_prev``, ``gh0 = a_first * g_first``."""
    g = forward(shifted_gates(a, reverse), gh, None, not reverse)
    ga = g * previous_states(h, h0, reverse)
    first = -1 if reverse else 0
    gh0 = a[first] * g[first] if h0 is not None else None
    return ga, g, gh0
