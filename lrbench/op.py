"""The scan as PyTorch operators (``torch.library``), with fake, vmap, autograd and forward-mode rules.

Operators, time-major on axis 0 (``a``, ``x`` and ``h`` are ``(T, *rest)``, ``h0`` is ``rest``):
  ``lrbench::scan(a, x, h0, reverse, backend) -> h``
  ``lrbench::scan_out(a, x, h0, reverse, backend, *, out)``     writes h into ``out``
  ``lrbench::scan_backward(a, h, h0, gh, reverse, backend) -> (ga, gx)``   a backend's fused backward
The backend is chosen when the operator runs (``auto`` sees the concrete T and N), so a traced graph
holds one opaque call. Inputs are read through their strides: a non-contiguous or broadcast (stride 0)
input is copied one tile of time steps at a time, never whole.

Derivatives. The backward is the reverse scan of paper §2.2, ``g = scan(shifted a, gh)`` in the other
direction, ``ga = g * h_prev``, ``gh0 = a_first * g_first``. When a graph of the backward is wanted
(double backward, Hessians, ``torch.func``), it is built from ``scan`` itself, so every order of
derivative is exact; otherwise the backend's fused kernel runs. The tangent is a scan too:
``dh[t] = a[t] dh[t-1] + da[t] h[t-1] + dx[t]`` from ``dh0``.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from . import auto_rule, memory, registry
from ._compat import direct  # noqa: F401 - whether a call may skip the dispatcher (torch internals)
from .checks import check_apart, check_backend
from .scan._common import backward_by_reverse_scan, previous_states

TILE_BYTES = 8 << 20  # per operand: the time steps of a strided input copied at once


def auto_backend(T: int, N: int, dtype: torch.dtype, device: torch.device) -> str:
    """The backend ``auto`` picks: a rule from measurements, no timing at call time. On the CPU,
    cpu-chunked where this machine's rule says it beats cpu-serial (``lrbench.auto_rule``: its
    measured table in ``lrbench/auto_cpu.json``, written by ``lrbench auto-table``, else a rule
    derived from its own facts, measured once and cached), else cpu-serial."""
    kind = device.type
    if kind == "cpu":
        if dtype in _compiled_cpu_dtypes():
            return "cpu-chunked" if auto_rule.chunked_wins(T, N) else "cpu-serial"
        return "torch-loop"
    if kind == "cuda":
        # cuda-scan dispatches inside itself (tiled scan, or the serial kernel where that should
        # be at least as fast); its threshold is a guess until measured on a GPU.
        ok = registry.available("cuda-scan") and dtype in registry.get("cuda-scan").load().DTYPES
        return "cuda-scan" if ok else "torch-loop"
    return "torch-loop"


@functools.cache
def _compiled_cpu_dtypes() -> tuple:
    """The dtypes cpu-serial takes (none where Numba is missing); a cache keyed on the dtype made
    auto's choice 1.2 us a call instead of 1.0 us."""
    return (
        tuple(registry.get("cpu-serial").load().DTYPES) if registry.available("cpu-serial") else ()
    )


def _backend(name: str, a: Tensor):
    """The backend module for ``name`` (``auto`` resolved for a's T, N, dtype and device), checked."""
    if name == "auto":
        name = auto_backend(a.shape[0], math.prod(a.shape[1:]), a.dtype, a.device)
    mod = registry.get(name).load()
    check_backend(name, mod, a)
    return mod


class _Rows:
    """Time steps [t0, t1) of t as contiguous (t1 - t0, N) tensors: views when t is contiguous,
    else copies into one buffer reused for every tile (fresh pages cost more than the copy)."""

    def __init__(self, t: Tensor, rows: int, N: int):
        self.t, self.N = t, N
        self.buf = None if t.is_contiguous() else t.new_empty((min(rows, t.shape[0]), N))

    def __call__(self, t0: int, t1: int) -> Tensor:
        if self.buf is None:
            return self.t[t0:t1].view(t1 - t0, self.N)
        tile = self.buf[: t1 - t0]
        tile.view(self.t[t0:t1].shape).copy_(self.t[t0:t1])
        return tile


def _tiles(T: int, rows: int, reverse: bool):
    starts = list(range(0, T, rows))
    for t0 in reversed(starts) if reverse else starts:
        yield t0, min(T, t0 + rows)


def _resolved(t: Tensor | None) -> Tensor | None:
    """t with any lazy conjugate or negation applied (kernels read raw memory)."""
    if t is not None and (t.is_conj() or t.is_neg()):
        return t.resolve_conj().resolve_neg()
    return t


def _as2d(t: Tensor, T: int, N: int) -> Tensor:
    return t if t.dim() == 2 else t.view(T, N)  # a view costs 0.7 us a call


def _forward_into(a: Tensor, x: Tensor, h0: Tensor | None, reverse: bool, backend: str, h: Tensor):
    """Run the backend, writing h (a contiguous tensor of a's shape)."""
    T, N = a.shape[0], math.prod(a.shape[1:])
    if T == 0 or N == 0:
        return
    mod = _backend(backend, a)
    hv = _as2d(h, T, N)
    carry = h0.reshape(N).contiguous() if h0 is not None else None
    check = mod.__dict__.get("check")  # backends are modules; hasattr costs 0.5 us a call
    if a.is_contiguous() and x.is_contiguous():
        a2, x2 = _as2d(a, T, N), _as2d(x, T, N)
        if check is not None:
            check(a2, x2, carry)
        mod.forward(a2, x2, carry, reverse, out=hv)
        return
    rows = max(1, TILE_BYTES // (N * a.element_size()))
    a_rows, x_rows = _Rows(a, rows, N), _Rows(x, rows, N)
    for t0, t1 in _tiles(T, rows, reverse):
        a2, x2 = a_rows(t0, t1), x_rows(t0, t1)
        if check is not None:
            check(a2, x2, carry)
        mod.forward(a2, x2, carry, reverse, out=hv[t0:t1])
        carry = hv[t0] if reverse else hv[t1 - 1]


def forward(
    a: Tensor, x: Tensor, h0: Tensor | None, reverse: bool, backend: str, out: Tensor | None = None
) -> Tensor:
    """The kernel without the dispatcher: h into ``out`` (any strides) or a fresh tensor."""
    a, x, h0 = _resolved(a), _resolved(x), _resolved(h0)
    inplace = out is not None and out.is_contiguous() and not (out.is_conj() or out.is_neg())
    h = out if inplace else memory.empty(x.shape, x.dtype, x.device)
    _forward_into(a, x, h0, reverse, backend, h)
    if out is not None and h is not out:
        out.copy_(h)
    return h if out is None else out


@torch.library.custom_op("lrbench::scan", mutates_args=())
def scan_op(a: Tensor, x: Tensor, h0: Tensor | None, reverse: bool, backend: str) -> Tensor:
    """h of ``h[t] = a[t] h[t-1] + x[t]`` over axis 0 by ``backend``."""
    return forward(a, x, h0, reverse, backend)


@torch.library.custom_op("lrbench::scan_out", mutates_args=("out",))
def scan_out_op(
    a: Tensor, x: Tensor, h0: Tensor | None, reverse: bool, backend: str, out: Tensor
) -> None:
    """``scan`` written into ``out`` (any strides; a contiguous ``out`` is written in place), which
    must share no memory with an input (checked here, where the addresses are real)."""
    check_apart(out, a, x, h0)
    forward(a, x, h0, reverse, backend, out)


@torch.library.custom_op("lrbench::scan_backward", mutates_args=())
def scan_backward_op(
    a: Tensor, h: Tensor, h0: Tensor | None, gh: Tensor, reverse: bool, backend: str
) -> tuple[Tensor, Tensor]:
    """(ga, gx) by the backend's fused backward kernel (the derivative of ``h0`` is taken outside)."""
    T, N = a.shape[0], math.prod(a.shape[1:])
    if T == 0 or N == 0:
        return torch.zeros_like(a, memory_format=torch.contiguous_format), torch.zeros_like(
            gh, memory_format=torch.contiguous_format
        )
    mod = _backend(backend, a)
    flat = [_resolved(t).reshape(T, N).contiguous() for t in (a, h, gh)]
    h0 = _resolved(h0).reshape(N).contiguous() if h0 is not None else None
    ga, gx, _ = mod.backward(flat[0], flat[1], h0, flat[2], reverse)
    inputs = {t.untyped_storage().data_ptr() for t in flat}
    ga, gx = (t.clone() if t.untyped_storage().data_ptr() in inputs else t for t in (ga, gx))
    return ga.view(a.shape), gx.view(a.shape)


def _check_fake(backend: str, a: Tensor):
    if backend != "auto":
        check_backend(backend, registry.get(backend).load(), a)


@scan_op.register_fake
def _(a, x, h0, reverse, backend):
    _check_fake(backend, a)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


@scan_out_op.register_fake
def _(a, x, h0, reverse, backend, out):
    _check_fake(backend, a)


@scan_backward_op.register_fake
def _(a, h, h0, gh, reverse, backend):
    return (
        torch.empty(a.shape, dtype=a.dtype, device=a.device),
        torch.empty(gh.shape, dtype=gh.dtype, device=gh.device),
    )


# vmap: the mapped axis becomes one more channel axis, right after time (h0: in front).


def _steps(t: Tensor | None, d: int | None, B: int) -> Tensor | None:
    if t is None:
        return None
    t = t.movedim(d, 1) if d is not None else t.unsqueeze(1)
    return t.expand(t.shape[0], B, *t.shape[2:])


def _state(t: Tensor | None, d: int | None, B: int) -> Tensor | None:
    if t is None:
        return None
    t = t.movedim(d, 0) if d is not None else t.unsqueeze(0)
    return t.expand(B, *t.shape[1:])


@torch.library.register_vmap("lrbench::scan")
def _(info, in_dims, a, x, h0, reverse, backend):
    B = info.batch_size
    da, dx, dh0 = in_dims[:3]
    return scan_op(_steps(a, da, B), _steps(x, dx, B), _state(h0, dh0, B), reverse, backend), 1


@torch.library.register_vmap("lrbench::scan_backward")
def _(info, in_dims, a, h, h0, gh, reverse, backend):
    B = info.batch_size
    da, dh, dh0, dgh = in_dims[:4]
    ga, gx = scan_backward_op(
        _steps(a, da, B), _steps(h, dh, B), _state(h0, dh0, B), _steps(gh, dgh, B), reverse, backend
    )
    return (ga, gx), (1, 1)


# Derivatives, shared by the operator's registered autograd and the eager autograd.Function.


def _setup_context(ctx, inputs, output):
    a, x, h0, reverse, backend = inputs
    ctx.reverse, ctx.backend, ctx.has_h0 = reverse, backend, h0 is not None
    ctx.save_for_backward(a, output, h0)


def _conj(t: Tensor | None) -> Tensor | None:
    """Complex inputs: torch's convention, gradient = conj(derivative) * incoming gradient."""
    return t.conj().resolve_conj() if t is not None and t.is_complex() else t


def _backward(ctx, gh):
    a, h, h0 = ctx.saved_tensors
    reverse, backend = ctx.reverse, ctx.backend
    if a.shape[0] == 0:
        return (
            torch.zeros_like(a),
            torch.zeros_like(gh),
            torch.zeros_like(h0) if ctx.has_h0 else None,
            None,
            None,
        )
    ac, hc, h0c = _conj(a), _conj(h), _conj(h0)
    if torch.is_grad_enabled():  # a graph of the backward is wanted: build it from scan
        ga, g, gh0 = backward_by_reverse_scan(
            lambda a, x, h0, r: scan(a, x, h0, r, backend), ac, hc, h0c, gh, reverse
        )
    else:
        ga, g = scan_backward_op(ac, hc, h0c, gh, reverse, backend)
        first = -1 if reverse else 0
        gh0 = ac[first] * g[first] if ctx.has_h0 else None
    return ga, g, gh0, None, None


scan_op.register_autograd(_backward, setup_context=_setup_context)


class _Scan(torch.autograd.Function):
    """``scan_op`` with a forward-mode rule, for eager autograd and ``torch.func`` (jvp, jacfwd).
    torch.library has no jvp registration for custom operators; under ``torch.compile`` the
    operator's own registered autograd is used instead (dynamo does not trace a custom jvp)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(a, x, h0, reverse, backend):
        return scan_op(a, x, h0, reverse, backend)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_context(ctx, inputs, output)
        a, _, h0 = inputs[:3]
        ctx.save_for_forward(a, output, h0)

    backward = staticmethod(_backward)

    @staticmethod
    def jvp(ctx, ta, tx, th0, _reverse, _backend):
        a, h, h0 = ctx.saved_tensors
        u = tx if tx is not None else torch.zeros_like(h)
        if ta is not None:
            u = u + ta * previous_states(h, h0, ctx.reverse)
        return scan(a, u, th0, ctx.reverse, ctx.backend)


def scan(a: Tensor, x: Tensor, h0: Tensor | None, reverse: bool, backend: str) -> Tensor:
    """The differentiable scan over axis 0 (reverse and forward mode, every order)."""
    if direct(a, x, h0):
        return forward(a, x, h0, reverse, backend)
    if torch.compiler.is_compiling():
        return scan_op(a, x, h0, reverse, backend)
    return _Scan.apply(a, x, h0, reverse, backend)
