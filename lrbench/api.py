"""``linear_recurrence``: the public entry point, autograd, and the ``auto`` backend rule."""
from __future__ import annotations

import math

import numpy as np
import torch

from . import registry
from .checks import check_backend, check_inputs

# auto on the CPU: with few channels and a long sequence one core is latency-bound, so the chunked
# scan wins (2.25x at N = 1, 1.5x at N = 16 and 32, T = 2^20 on 2 cores); with many channels the
# serial scan already runs at memory bandwidth and the chunked one's second read of a and x makes
# it slower (0.8x at N = 256). At N = 2..8 cpu-chunked is 5x slower than serial (0.18-0.2x at
# T = 2^20; 0.97x at N = 8), a defect of its small-N tiling, so auto keeps serial there.
AUTO_CHUNKED_MIN_T = 1 << 15


def _chunked_wins(N: int) -> bool:
    return N == 1 or 16 <= N <= 128


def auto_backend(T: int, N: int, dtype: torch.dtype, device: torch.device) -> str:
    """The backend ``auto`` picks: a documented rule, no timing at call time."""
    if device.type == "cuda":
        # cuda-scan dispatches inside itself (tiled scan, or the serial kernel where that should
        # be at least as fast); its threshold is a guess until measured on a GPU.
        return "cuda-scan" if registry.available("cuda-scan") else "torch-loop"
    if device.type != "cpu" or dtype not in (torch.float32, torch.float64):
        return "torch-loop"
    if not registry.available("cpu-serial"):
        return "torch-loop"
    if _chunked_wins(N) and T >= AUTO_CHUNKED_MIN_T:
        return "cpu-chunked"
    return "cpu-serial"


class _LinearRecurrence(torch.autograd.Function):
    """Forward and the paper's reverse-scan backward, both by the same backend, on (T, N)."""

    @staticmethod
    def forward(ctx, a, x, h0, mod, reverse):
        h = mod.forward(a, x, h0, reverse)
        ctx.mod, ctx.reverse, ctx.has_h0 = mod, reverse, h0 is not None
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gh):
        a, h, h0 = ctx.saved_tensors
        ga, gx, gh0 = ctx.mod.backward(a, h, h0, gh.contiguous(), ctx.reverse)
        return ga, gx, (gh0 if ctx.has_h0 else None), None, None


def linear_recurrence(a, x, h0=None, *, dim: int = 0, reverse: bool = False, backend: str = "auto"):
    """Solve ``h[t] = a[t] * h[t-1] + x[t]`` along axis ``dim``, elementwise over every other axis.

    Args:
        a: gates (decays), any shape with the time axis at ``dim``; floating point.
        x: inputs, the shape, dtype and device of ``a``.
        h0: the state before the first step (``h[-1]``), shape of ``a`` without ``dim``; default 0.
        dim: the time axis.
        reverse: run from the end: ``h[t] = a[t] * h[t+1] + x[t]`` with ``h[T] = h0``.
        backend: a name from ``lrbench.backends()`` or ``"auto"`` (see ``auto_backend``).

    Returns:
        h, the shape and dtype of ``x``. Torch tensors in, torch tensors out (differentiable in
        ``a``, ``x`` and ``h0``); NumPy arrays in, NumPy arrays out.
    """
    as_numpy = isinstance(a, np.ndarray)
    if as_numpy != isinstance(x, np.ndarray):
        raise TypeError(f"arguments 'a' and 'x' must both be torch tensors or both numpy arrays; "
                        f"got a {type(a).__name__} and x {type(x).__name__}")
    if as_numpy:
        a, x = torch.from_numpy(a), torch.from_numpy(x)
        h0 = torch.from_numpy(np.asarray(h0)) if isinstance(h0, np.ndarray) else h0
    dim = check_inputs(a, x, h0, dim)
    T = a.shape[dim]
    rest = a.shape[:dim] + a.shape[dim + 1:]
    N = math.prod(rest)
    name = auto_backend(T, N, a.dtype, a.device) if backend == "auto" else backend
    entry = registry.get(name)
    mod = entry.load()
    check_backend(name, mod, a)
    if T == 0 or N == 0:
        h = a * x                                  # empty, right shape, still in the graph
    else:
        a2, x2 = (t.movedim(dim, 0) if dim else t for t in (a, x))
        a2, x2 = a2.reshape(T, N).contiguous(), x2.reshape(T, N).contiguous()
        h02 = h0.reshape(N).contiguous() if h0 is not None else None
        if hasattr(mod, "check"):
            mod.check(a2, x2, h02)
        h = _LinearRecurrence.apply(a2, x2, h02, mod, reverse)
        h = h.reshape((T,) + tuple(rest))
        h = h.movedim(0, dim) if dim else h
    return h.detach().numpy() if as_numpy else h
