"""``linear_recurrence``: the public entry point (NumPy in and out, any axis, ``out=``) over ``op.py``."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from . import registry
from .checks import check_inputs, check_out
from .op import auto_backend, direct, forward, scan, scan_out_op
from .packed import packed_scan

__all__ = ["linear_recurrence", "auto_backend"]


def _from_numpy(v):
    """A tensor sharing v's memory where torch can (any non-negative strides), else a native copy."""
    if v is None or isinstance(v, torch.Tensor):
        return v
    v = np.asarray(v)
    if not v.dtype.isnative:
        v = v.astype(v.dtype.newbyteorder("="))
    if any(s < 0 or s % v.itemsize for s in v.strides):
        v = np.ascontiguousarray(v)
    with warnings.catch_warnings():  # read-only views (np.broadcast_to) are only read
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(v)


def linear_recurrence(
    a,
    x,
    h0=None,
    *,
    dim: int = 0,
    reverse: bool = False,
    backend: str = "auto",
    out=None,
    cu_seqlens=None,
):
    """Solve ``h[t] = a[t] * h[t-1] + x[t]`` along axis ``dim``, elementwise over every other axis.

    Args:
        a: gates (decays), any shape with the time axis at ``dim``; floating point or complex. Any
            strides, broadcast (stride 0) included: strided inputs are read a tile at a time.
        x: inputs, the shape, dtype and device of ``a``.
        h0: the state before the first step (``h[-1]``), shape of ``a`` without ``dim``; default 0.
            With ``cu_seqlens``, one state per sequence: ``(B,) + that shape``.
        dim: the time axis.
        reverse: run from the end: ``h[t] = a[t] * h[t+1] + x[t]`` with ``h[T] = h0``.
        backend: a name from ``lrbench.backends()`` or ``"auto"`` (see ``auto_backend``).
        out: a tensor (an array, for NumPy inputs) of x's shape, dtype and device to write h into;
            returned. Not differentiable: refused when an input requires grad.
        cu_seqlens: int64 offsets ``[0, ..., total_T]`` of B sequences packed along ``dim`` (FLA's
            convention; any integer dtype, checked in int64); each starts from its own h0 (or 0;
            an empty sequence's h0 is ignored) and never sees its neighbour, forward and backward,
            inf and NaN included. Under ``torch.compile`` a packed call runs eagerly (a graph
            break; ``fullgraph=True`` and ``torch.export`` refuse it, naming cu_seqlens); under
            ``torch.func`` transforms (``vmap`` included) each sequence is scanned alone, and
            cu_seqlens itself cannot be batched.

    Returns:
        h, the shape and dtype of ``x``. Torch tensors in, torch tensors out, differentiable in
        ``a``, ``x`` and ``h0`` to every order and in forward mode, traceable by ``torch.compile``
        and ``torch.export``, batchable by ``torch.func.vmap``; NumPy arrays in, NumPy arrays out.
    """
    as_numpy = isinstance(a, np.ndarray)
    if as_numpy != isinstance(x, np.ndarray):
        raise TypeError(
            f"arguments 'a' and 'x' must both be torch tensors or both numpy arrays; "
            f"got a {type(a).__name__} and x {type(x).__name__}"
        )
    if isinstance(cu_seqlens, np.ndarray):
        cu_seqlens = _from_numpy(cu_seqlens)
    out_np = None
    if as_numpy:
        a, x, h0 = (_from_numpy(v) for v in (a, x, h0))
        if out is not None:
            out_np, out = out, _numpy_out(out)
    dim = check_inputs(a, x, h0, dim, packed=cu_seqlens is not None)
    if backend != "auto":
        registry.get(backend)  # an unknown name fails here, before any work
    if out is not None:
        check_out(out, a, x, h0)
    at, xt = (t.movedim(dim, 0) if dim else t for t in (a, x))
    if cu_seqlens is not None and backend == "log-space":
        raise ValueError(
            "backend 'log-space' cannot take argument 'cu_seqlens': a reset is a "
            "gate of 0 and log-space needs every gate > 0; pick another backend"
        )
    if out is None:
        if cu_seqlens is not None:  # see packed.py: compile, vmap, non-finite values
            h = packed_scan(at, xt, h0, cu_seqlens, reverse, backend)
        else:
            h = scan(at, xt, h0, reverse, backend)
        h = h.movedim(0, dim) if dim else h
        return h.detach().numpy() if as_numpy else h
    outt = out.movedim(dim, 0) if dim else out
    if cu_seqlens is not None:
        packed_scan(at, xt, h0, cu_seqlens, reverse, backend, out=outt)
    elif direct(at, xt, h0, outt):
        forward(at, xt, h0, reverse, backend, outt)
    else:
        scan_out_op(at, xt, h0, reverse, backend, out=outt)
    if out_np is not None and not np.shares_memory(out_np, out.numpy()):
        np.copyto(out_np, out.numpy())  # a byte order or strides torch cannot view
    return out_np if as_numpy else out


def _numpy_out(out):
    """A tensor to write a NumPy ``out`` through: its memory where torch can view it, else a
    native scratch copied back after the call."""
    if not isinstance(out, np.ndarray):
        raise TypeError(
            f"argument 'out' must be a numpy array for numpy inputs; got {type(out).__name__}"
        )
    if not out.flags.writeable:
        raise ValueError("argument 'out' is a read-only numpy array; pass a writable one")
    if out.dtype.isnative and all(s >= 0 and s % out.itemsize == 0 for s in out.strides):
        return torch.from_numpy(out)
    return torch.from_numpy(np.empty(out.shape, dtype=out.dtype.newbyteorder("=")))
