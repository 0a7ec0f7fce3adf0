"""Packed variable-length batches: B sequences back to back on the time axis, split by cu_seqlens.

A sequence start is a reset: ``h[s] = a[s] h0_b + x[s]`` forgets ``h[s-1]``. That is one scan over
the whole packed axis with the gate at every start set to 0 and ``a[s] h0_b`` added to ``x[s]``, so
every backend runs it in one call (no loop over sequences). Reversed, the reset sits at each
sequence's last step. Costs one copy of a and x. An empty sequence's h0 is never read.

Non-finite values. A zero gate cannot clear an inf or NaN state (0 * inf is NaN), so a non-finite
state at a boundary would reach the next sequence: ``repair`` checks the B rows a reset multiplies
and, only when one is not finite, scans every sequence alone. A backend that multiplies gate
products across a reset (associative or chunked: torch-assoc, cuda-scan, triton-scan, ...) can
also meet 0 * inf inside with every boundary finite, so its whole result is checked (one sum).
With finite values a reset multiplies by an exact 0: a finite result holds no neighbour's values.
The backward (``_Packed``) is the same packed scan run the other way over the shifted gates, with
the same check, so a gradient that overflows in one sequence never reaches its neighbour; it is
built from differentiable calls, so every order of derivative keeps the sequences apart.

That check is a data-dependent branch, so:

* under ``torch.compile`` the packed call runs eagerly (``torch.compiler.disable``: a graph break,
  exact results); ``fullgraph=True`` and ``torch.export`` refuse it, the reason naming cu_seqlens;
* under ``torch.func`` transforms (``vmap``, ``grad``, ``jvp``, ...) and forward-mode AD every
  sequence is scanned alone: B calls, no branch. cu_seqlens itself cannot be batched by vmap.
"""

from __future__ import annotations

import math

import torch

from ._compat import is_batched, transforms_active
from .op import auto_backend, direct, forward, scan, scan_out_op
from .scan._common import shifted_gates

# Backends whose only step across a reset is h[s] = 0 * h[s-1] + x[s], serial as the loop is:
# a neighbour can reach a sequence only through a non-finite boundary row. cpu-chunked's carries
# run serially wherever they are not finite (scan/cpu/chunked.py).
SERIAL_AT_RESETS = frozenset(
    {"cpu-serial", "cpu-chunked", "torch-loop", "reference", "cuda-serial"}
)

EAGER_REASON = (
    "a call with argument 'cu_seqlens' runs eagerly under torch.compile (it checks "
    "sequence boundaries for inf/NaN, a data-dependent branch), so torch.compile with "
    "fullgraph=True and torch.export cannot take it"
)


@torch.compiler.disable(reason=EAGER_REASON)
def packed_scan(a, x, h0, cu_seqlens, reverse: bool, backend: str, out=None) -> torch.Tensor:
    """h of the packed batch over time-major ``a``, ``x`` (``(T, *rest)``) and ``h0``
    (``(B, *rest)`` or None), into ``out`` when given (no autograd there). Validates the offsets."""
    cu = check_cu_seqlens(cu_seqlens, a.shape[0], a.device)
    if h0 is not None and h0.shape[0] != cu.numel() - 1:
        raise ValueError(
            f"argument 'h0' must hold one state per sequence of 'cu_seqlens' "
            f"({cu.numel() - 1}); got {h0.shape[0]}"
        )
    if out is None:
        return packed(a, x, h0, cu, reverse, backend)
    return _into(out, a, x, h0, cu, reverse, backend)


def check_cu_seqlens(cu, total_T: int, device: torch.device) -> torch.Tensor:
    """The offsets as an int64 tensor on ``device``; errors name ``cu_seqlens`` and what was seen.
    Checked in int64 after an exact conversion: differences in the offsets' own dtype wrap around
    (uint8 5 - 10 is 251)."""
    if not isinstance(cu, torch.Tensor):
        raise TypeError(
            f"argument 'cu_seqlens' must be a torch.Tensor of int64 offsets; got "
            f"{type(cu).__name__}"
        )
    if is_batched(cu):
        raise ValueError(
            "argument 'cu_seqlens' cannot be batched by torch.func.vmap (one split "
            "for the whole batch); got a batched tensor: pass it with in_dims None"
        )
    if (
        cu.ndim != 1
        or cu.numel() < 2
        or cu.dtype.is_floating_point
        or cu.is_complex()
        or cu.dtype == torch.bool
        or cu.device.type == "meta"
    ):
        raise ValueError(
            f"argument 'cu_seqlens' must be a 1-d integer tensor [0, ..., total_T] of "
            f"at least 2 offsets; got shape {tuple(cu.shape)}, dtype {cu.dtype}, "
            f"device {cu.device}"
        )
    cu = _as_int64(cu)
    first, last = int(cu[0]), int(cu[-1])
    if first != 0 or last != total_T:
        raise ValueError(
            f"argument 'cu_seqlens' must start at 0 and end at total_T = {total_T} "
            f"(the time axis of a and x); got {first} ... {last}"
        )
    down = cu[1:] < cu[:-1]
    if bool(down.any()):
        i = int(torch.nonzero(down)[0])
        raise ValueError(
            f"argument 'cu_seqlens' must be non-decreasing; got {int(cu[i])} then "
            f"{int(cu[i + 1])} at positions {i}, {i + 1}"
        )
    return cu.to(device=device)


def _as_int64(cu: torch.Tensor) -> torch.Tensor:
    """``cu`` converted to int64, refused where that is not exact (uint64 offsets >= 2^63)."""
    if cu.dtype == torch.uint64:
        big = cu.view(torch.int64) < 0
        if bool(big.any()):
            i = int(torch.nonzero(big)[0])
            raise ValueError(
                f"argument 'cu_seqlens' must hold offsets int64 can represent (at "
                f"most 2^63 - 1); got {cu[i : i + 1].tolist()[0]} at position {i}"
            )
    return cu.to(torch.int64)


def packed(a, x, h0, cu: torch.Tensor, reverse: bool, backend: str) -> torch.Tensor:
    """The packed scan over validated offsets ``cu``: one call (and the boundary check), or every
    sequence alone under torch.func transforms and forward-mode AD."""
    run = _kernel(reverse, backend)
    if transforms_active():
        return _alone(a, x, h0, cu, run)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (a, x, h0)):
        return _Packed.apply(a, x, h0, cu, reverse, backend)
    return _one_call(a, x, h0, cu, reverse, backend)


def _kernel(reverse: bool, backend: str):
    return lambda a, x, h0: scan(a, x, h0, reverse, backend)


def _one_call(a, x, h0, cu, reverse: bool, backend: str) -> torch.Tensor:
    """One scan over the packed axis with resets, repaired where a neighbour may leak in."""
    at, xt = reset_at_starts(a, x, h0, cu, reverse)
    run = _kernel(reverse, backend)
    return repair(run(at, xt, None), a, x, h0, cu, reverse, run, whole=_whole(backend, a))


def _whole(backend: str, a) -> bool:
    """Whether ``repair`` must check the whole result: the backend is not serial at resets."""
    if backend == "auto":
        backend = auto_backend(a.shape[0], math.prod(a.shape[1:]), a.dtype, a.device)
    return backend not in SERIAL_AT_RESETS


def _into(out, a, x, h0, cu, reverse: bool, backend: str) -> torch.Tensor:
    """``packed`` written into ``out`` (time-major, x's shape)."""
    if transforms_active():
        return out.copy_(_alone(a, x, h0, cu, _kernel(reverse, backend)))
    at, xt = reset_at_starts(a, x, h0, cu, reverse)
    if direct(at, xt, out):
        forward(at, xt, None, reverse, backend, out)
    else:
        scan_out_op(at, xt, None, reverse, backend, out=out)
    fixed = repair(
        out,
        a,
        x,
        h0,
        cu,
        reverse,
        lambda a, x, h0: forward(a, x, h0, reverse, backend),
        whole=_whole(backend, a),
    )
    return out if fixed is out else out.copy_(fixed)  # recomputed from a, x, h0: no aliasing


class _Packed(torch.autograd.Function):
    """``_one_call`` with a backward that is a packed scan too (the adjoint of paper §2.2 with its
    own resets and check): ``g`` runs the other way over the gates shifted within each sequence,
    ``gx = g``, ``ga = g * h_prev`` (h0 or 0 at a first step), ``gh0 = a_first * g_first``."""

    @staticmethod
    def forward(a, x, h0, cu, reverse, backend):
        return _one_call(a, x, h0, cu, reverse, backend)

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, _, h0, cu, reverse, backend = inputs
        ctx.save_for_backward(a, output, h0)
        ctx.cu, ctx.reverse, ctx.backend = cu, reverse, backend

    @staticmethod
    def backward(ctx, gh):
        a, h, h0 = ctx.saved_tensors
        cu, reverse = ctx.cu, ctx.reverse
        ac = _conj(a)
        g = packed(adjoint_gates(ac, cu, reverse), gh, None, cu, not reverse, ctx.backend)
        ga = g * _conj(previous_states(h, h0, cu, reverse)) if ctx.needs_input_grad[0] else None
        gh0 = None
        if h0 is not None and ctx.needs_input_grad[2]:
            gh0 = first_rows(ac, cu, reverse) * first_rows(g, cu, reverse)
        return ga, g, gh0, None, None, None


def _conj(t):
    """Complex inputs: torch's convention, gradient = conj(derivative) * incoming gradient."""
    return t.conj() if t is not None and t.is_complex() else t


def _firsts(cu: torch.Tensor, reverse: bool, T: int):
    """(row, nonempty) of every sequence's first step in scan order (its last step, reversed);
    an empty sequence's row is clamped into [0, T) and must be masked by ``nonempty``."""
    row = (cu[1:] - 1) if reverse else cu[:-1]
    return row.clamp(0, T - 1), cu[1:] > cu[:-1]


def _at_rows(T: int, row: torch.Tensor, nonempty: torch.Tensor) -> torch.Tensor:
    """A (T,) bool mask, True at the rows of the nonempty sequences."""
    count = torch.zeros(T, dtype=torch.int64, device=row.device)
    return count.index_add_(0, row, nonempty.long()) > 0


def _col(mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A mask over axis 0, shaped to broadcast against t."""
    return mask.view(-1, *[1] * (t.ndim - 1))


def _zero(t: torch.Tensor) -> torch.Tensor:
    return torch.zeros((), dtype=t.dtype, device=t.device)


def _masked(h0: torch.Tensor, nonempty: torch.Tensor) -> torch.Tensor:
    """h0 with an empty sequence's row 0 (a ``where``: an inf there neither shows nor gets a NaN
    gradient)."""
    return torch.where(_col(nonempty, h0), h0, _zero(h0))


def first_rows(t, cu: torch.Tensor, reverse: bool) -> torch.Tensor:
    """(B, *rest): t at every sequence's first step in scan order, 0 for an empty sequence. A
    ``where``, never a multiply, drops the rows, so nothing of a neighbour's flows back."""
    if t.shape[0] == 0:
        return t.new_zeros((cu.numel() - 1,) + t.shape[1:])
    row, nonempty = _firsts(cu, reverse, t.shape[0])
    return torch.where(_col(nonempty, t), t.index_select(0, row), _zero(t))


def reset_at_starts(a, x, h0, cu: torch.Tensor, reverse: bool):
    """(a, x) of one scan over the packed time axis 0 that restarts every sequence from its h0.

    The gate at a start becomes 0 (``where``, so an inf or NaN there cannot leak into the previous
    sequence as 0 * inf) and ``a[s] * h0_b`` joins ``x[s]``, as the serial loop computes it: with
    no h0 that is ``a[s] * 0``, NaN for a NaN or inf gate, like the loop's. An empty sequence
    adds 0: its gate and its h0 are both masked before the product (0 * inf is NaN)."""
    T = a.shape[0]
    if T == 0:
        return a, x
    row, nonempty = _firsts(cu, reverse, T)
    a_reset = torch.where(_col(_at_rows(T, row, nonempty), a), _zero(a), a)
    gate = first_rows(a, cu, reverse)
    state = torch.zeros_like(gate) if h0 is None else _masked(h0, nonempty)
    return a_reset, x.index_add(0, row, gate * state)


def adjoint_gates(a, cu: torch.Tensor, reverse: bool):
    """Gates of the backward scan (direction ``not reverse``): a[t+1] (a[t-1] reversed) within a
    sequence, and 1 at its last step (first, reversed), where the backward starts from 0: the
    neighbour's gate there is never read."""
    T = a.shape[0]
    if T == 0:
        return a
    row, nonempty = _firsts(cu, not reverse, T)
    one = torch.ones((), dtype=a.dtype, device=a.device)
    return torch.where(_col(_at_rows(T, row, nonempty), a), one, shifted_gates(a, reverse))


def previous_states(h, h0, cu: torch.Tensor, reverse: bool):
    """h[t-1] (h[t+1] reversed) within each sequence, and its h0 (or 0) at its first step."""
    T = h.shape[0]
    if T == 0:
        return h
    row, nonempty = _firsts(cu, reverse, T)
    pad = torch.zeros_like(h[:1])  # at a first step: replaced below
    shifted = torch.cat([pad, h[:-1]]) if not reverse else torch.cat([h[1:], pad])
    first = _zero(h)
    if h0 is not None:
        first = torch.zeros_like(h).index_add(0, row, _masked(h0, nonempty))
    return torch.where(_col(_at_rows(T, row, nonempty), h), first, shifted)


def repair(h, a, x, h0, cu: torch.Tensor, reverse: bool, run, whole: bool = False):
    """h, or, when a neighbour may have reached a sequence, every sequence scanned alone by
    ``run(a, x, h0)`` (the call's scan). A zero gate cannot clear an inf or NaN state (0 * inf is
    NaN): checked on the B rows a reset multiplies, one ``isfinite`` over B rows. ``whole``: the
    backend multiplies gate products across resets, so any inf or NaN in h counts (one sum over
    h). The loop over sequences runs only then."""
    T = h.shape[0]
    if T == 0:
        return h
    if _boundary_not_finite(h.detach(), cu, reverse) or (whole and _any_not_finite(h.detach())):
        return _alone(a, x, h0, cu, run)
    return h


def _boundary_not_finite(h, cu: torch.Tensor, reverse: bool) -> bool:
    """Whether the row a reset multiplies (the neighbour's state) is not finite anywhere."""
    T = h.shape[0]
    starts, ends = cu[:-1], cu[1:]
    boundary = ends if reverse else starts - 1  # the neighbour's row a reset multiplies
    inside = (ends > starts) & (boundary >= 0) & (boundary < T)
    rows = h.index_select(0, boundary.clamp(0, T - 1))
    rows = rows.reshape(len(starts), math.prod(rows.shape[1:]))
    return bool((inside & ~torch.isfinite(rows).all(dim=1)).any())


def _any_not_finite(h) -> bool:
    """Whether h holds an inf or NaN, by one sum (a sum that overflows counts too: then the
    sequences are scanned alone, correct and slower). Half types are summed in float32."""
    low = h.dtype in (torch.float16, torch.bfloat16)
    return not bool(torch.isfinite(h.sum(dtype=torch.float32) if low else h.sum()))


def _alone(a, x, h0, cu: torch.Tensor, run) -> torch.Tensor:
    """Every sequence scanned by its own call of ``run(a, x, h0)``, concatenated."""
    bounds = zip(cu[:-1].tolist(), cu[1:].tolist())
    return torch.cat(
        [run(a[s:e], x[s:e], None if h0 is None else h0[b]) for b, (s, e) in enumerate(bounds)]
    )
