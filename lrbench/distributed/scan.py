"""The sequence-parallel scan: local scans, one all-gather of per-channel summaries, a fixed-order fold.

Rank r of P holds ``a_r, x_r`` of shape ``(T_r, ...)``: the slice of the time axis after rank r-1's.

Forward. Each rank but the last reduces its slice to the affine map it applies to the state,
``h_end = A_r h_start + H_r``, with ``A_r = prod(a_r)`` and ``H_r`` the last row of the local scan
from 0 (rank 0 scans from ``h0``, so its ``H_0`` is already its end state and no one needs ``A_0``).
The ranks all-gather ``(A, H)``: 2·N values per rank. Rank r folds its predecessors in the order
0, 1, ..., r-1 (``c = H_0``, then ``c = A_k c + H_k``), so every rank computes the same carry bits
for the same predecessors, and re-scans its slice from ``c``. Rank 0 scans once; rank P-1 needs no
summary, so it too scans once; the others scan twice. The last rank cannot start before the
exchange, so a call takes a middle rank's scan and product, the exchange, then a scan: with P equal
slices about 2.3/P of one process's time for P >= 3, and no less than one process's for P = 2
(docs/sequence-parallel.md has the model and the measurements).

Backward. The same in reverse. The gradient reaching rank r's end state from later ranks is
``g_r = A_{r+1} g_{r+1} + G_{r+1}`` with ``G_k`` rank k's gradient with respect to its start state
when nothing comes from after it. Ranks 1..P-1 compute ``G_k`` with the local backward, all-gather
it (N values per rank: every rank already holds the A's from the forward), fold their successors in
the order P-1, P-2, ..., r+1, add the result to the gradient of their last step and run the local
backward again. The last rank and rank 0 run the local backward once.

Summaries are exchanged and folded in float32 for 16-bit inputs (the input dtype otherwise, complex
included: the backward's fold multiplies by conj(A), torch's convention); the carry is rounded once
to the input dtype to start the re-scan. The local scans and their backward
are ``lrbench.linear_recurrence`` and its autograd, with any backend.

Before the first exchange the ranks all-gather a small header (dtype, N, whether h0 is given,
whether autograd records) so that a mismatch is one clear error on every rank, never a hang or a
crash in the transport.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .. import linear_recurrence as local_recurrence
from ..checks import check_inputs

# header dtype codes (an index; unknown dtypes get len(DTYPES))
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128)
HALF = (torch.float16, torch.bfloat16)
OK, HAS_H0, GRAD, DTYPE, T_, N_, LAYOUT = range(7)          # header fields


@dataclass
class Traffic:
    """What this process's collectives moved: calls, and payload bytes received from other ranks
    (an all-gather of s bytes per rank brings (P-1)·s to each). Transport framing not included."""
    collectives: int = 0
    bytes_received: int = 0

    def reset(self) -> None:
        self.collectives, self.bytes_received = 0, 0


traffic = Traffic()


def _all_gather(t: torch.Tensor, group, world: int) -> torch.Tensor:
    """(P, *t.shape): every rank's ``t`` in rank order."""
    flat = t.reshape(-1).contiguous()
    out = flat.new_empty(world * flat.numel())
    dist.all_gather_single(out, flat, group=group)
    traffic.collectives += 1
    traffic.bytes_received += (world - 1) * flat.numel() * flat.element_size()
    return out.view(world, *t.shape)


def _group_position(group) -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("lrbench.distributed.linear_recurrence needs an initialised process group: "
                           "call torch.distributed.init_process_group first (torchrun sets its "
                           "environment), or use lrbench.linear_recurrence on one process")
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError("argument 'group': this process is not a member of the given process group")
    return rank, dist.get_world_size(group)


def _header_device(a, group) -> torch.device:
    if isinstance(a, torch.Tensor):
        return a.device
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _desc(t) -> str:
    return f"a torch.Tensor of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__


def _check(a, x, h0, group, rank: int, world: int, grad: bool):
    """Validate locally, then agree across ranks; every rank raises the same error on a mismatch."""
    error = None
    try:
        for name, t in (("a", a), ("x", x), ("h0", h0)):
            if t is not None and not isinstance(t, torch.Tensor):
                raise TypeError(f"argument {name!r} must be a torch.Tensor (NumPy arrays cannot go "
                                f"through torch.distributed); got {type(t).__name__}")
        check_inputs(a, x, h0, 0)
    except (TypeError, ValueError) as e:
        error = e
    header = torch.zeros(7, dtype=torch.int64)
    if error is None:
        rest = tuple(a.shape[1:])
        header[OK], header[HAS_H0], header[GRAD] = 1, h0 is not None, grad
        header[DTYPE] = DTYPES.index(a.dtype) if a.dtype in DTYPES else len(DTYPES)
        header[T_], header[N_] = a.shape[0], math.prod(rest)
        header[LAYOUT] = zlib.crc32(repr(rest).encode())
    heads = _all_gather(header.to(_header_device(a, group)), group, world).cpu()
    if error is not None:
        raise error
    if not heads[:, OK].all():
        bad = heads[:, OK].eq(0).nonzero().flatten().tolist()
        raise ValueError(f"the inputs of rank(s) {bad} were rejected (see the error there); "
                         f"this rank's were fine")
    if heads[1:, HAS_H0].any():
        bad = (heads[1:, HAS_H0].nonzero().flatten() + 1).tolist()
        raise ValueError(f"argument 'h0' was given on rank(s) {bad}; only rank 0 may give it (the "
                         f"state before the first step of the whole sequence); the others start "
                         f"where the previous rank ends")
    names = [str(DTYPES[i]) if i < len(DTYPES) else "other" for i in heads[:, DTYPE].tolist()]
    if len(set(names)) > 1:
        raise TypeError(f"arguments 'a' and 'x' must have the same dtype on every rank; got "
                        f"{', '.join(f'rank {r}: {n}' for r, n in enumerate(names))}")
    if len(set(heads[:, N_].tolist())) > 1:
        Ns = ", ".join(f"rank {r}: N={n}" for r, n in enumerate(heads[:, N_].tolist()))
        raise ValueError(f"arguments 'a' and 'x' must have the same N (product of the dims after "
                         f"the time axis) on every rank; got {Ns} (this rank: shape {tuple(a.shape)})")
    if len(set(heads[:, LAYOUT].tolist())) > 1:
        raise ValueError(f"arguments 'a' and 'x' must have the same shape after the time axis on "
                         f"every rank; N agrees but the dims differ (this rank: shape {tuple(a.shape)})")
    if len(set(heads[:, GRAD].tolist())) > 1:
        on = heads[:, GRAD].nonzero().flatten().tolist()
        raise RuntimeError(f"autograd records this call on rank(s) {on} only; the backward "
                           f"exchanges between ranks, so every rank must record it or none")


class _Local:
    """One rank's local scan, kept as a small autograd graph so the backward can run it twice."""

    def __init__(self, a, x, start, backend, grad: bool):
        with torch.enable_grad() if grad else torch.no_grad():
            leaves = [t.detach().requires_grad_(grad) for t in (a, x)]
            if start is not None:
                leaves.append(start.detach().requires_grad_(grad))
            self.h = local_recurrence(*leaves, dim=0, backend=backend)
        self.leaves = leaves

    def grads(self, gh, retain: bool):
        """(ga, gx, g_start or None) for the gradient ``gh`` of this slice's h."""
        out = torch.autograd.grad(self.h, self.leaves, gh, retain_graph=retain)
        return out[0], out[1], (out[2] if len(out) > 2 else None)


class _SequenceParallelScan(torch.autograd.Function):

    @staticmethod
    def forward(ctx, a, x, h0, group, backend, rank, world):
        grad = any(ctx.needs_input_grad[:3])
        T, rest, dtype = a.shape[0], a.shape[1:], a.dtype
        sdt = torch.float32 if dtype in HALF else dtype
        N = math.prod(rest)
        last = rank == world - 1
        A = torch.ones(N, dtype=sdt, device=a.device)
        H = torch.zeros(N, dtype=sdt, device=a.device)
        local = None
        if rank == 0:
            start = h0.clone() if h0 is not None else a.new_zeros(rest)
            if T:
                local = _Local(a, x, h0, backend, grad)
                H = local.h[-1].reshape(N).to(sdt)
            else:
                H = start.reshape(N).to(sdt)
        elif not last and T:
            A = torch.prod(a.reshape(T, N), dim=0, dtype=sdt)
            with torch.no_grad():
                H = local_recurrence(a, x, dim=0, backend=backend)[-1].reshape(N).to(sdt)
        As = None
        if world > 1 and N:
            AH = _all_gather(torch.stack([A, H]), group, world)          # (P, 2, N)
            As = AH[:, 0]
        if rank > 0:
            c = AH[0, 1] if N else H
            for k in range(1, rank):
                c = As[k] * c + AH[k, 1]
            start = c.to(dtype).reshape(rest)
            if T:
                local = _Local(a, x, start, backend, grad)
        ctx.local, ctx.As, ctx.group = local, As, group
        ctx.rank, ctx.world, ctx.shape, ctx.sdt, ctx.has_h0 = rank, world, a.shape, sdt, h0 is not None
        h = local.h.detach() if local is not None else a.new_empty(a.shape)
        return h, start

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gh, gstart):
        local, As, rank, world, sdt = ctx.local, ctx.As, ctx.rank, ctx.world, ctx.sdt
        ctx.local = None                                     # free the graph when done
        T, N, rest = ctx.shape[0], math.prod(ctx.shape[1:]), ctx.shape[1:]
        last = rank == world - 1
        ga = gx = gc = None
        G = torch.zeros(N, dtype=sdt, device=gh.device)     # this rank's G (rank 0's is never used)
        if rank > 0:
            G = gstart.reshape(N).to(sdt)
            if T:
                ga, gx, gc = local.grads(gh, retain=not last)
                G = G + gc.reshape(N).to(sdt)
        if world > 1 and N:
            Gs = _all_gather(G, ctx.group, world)            # (P, N)
        if not last:
            c = Gs[world - 1] if N else G
            for k in range(world - 2, rank, -1):
                c = As[k].conj() * c + Gs[k]                  # conj: torch's complex convention
            if T:
                gh = gh.clone()
                gh[-1] = (gh[-1].reshape(N).to(sdt) + c).to(gh.dtype).reshape(rest)
                ga, gx, gc = local.grads(gh, retain=False)
            else:
                ga, gx, gc = gh.new_zeros(ctx.shape), gh.new_zeros(ctx.shape), c.to(gh.dtype).reshape(rest)
        elif not T:
            ga, gx = gh.new_zeros(ctx.shape), gh.new_zeros(ctx.shape)
        elif rank == 0:                                      # one rank: no exchange at all
            ga, gx, gc = local.grads(gh, retain=False)
        gh0 = None
        if rank == 0 and ctx.has_h0:
            gh0 = gstart + (gc if gc is not None else 0)
        return ga, gx, gh0, None, None, None, None


def linear_recurrence_with_start(a, x, h0=None, *, group=None, backend: str = "auto"):
    """``(h, start)``: this rank's slice of h and the state before its first step (rank 0: ``h0``,
    or zeros; rank r: where rank r-1 ends), both differentiable. The GILR-LSTM's "previous"
    surrogate shifts h by one step and takes its first element from ``start``."""
    rank, world = _group_position(group)
    grad = torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad
                                           for t in (a, x, h0))
    _check(a, x, h0, group, rank, world, grad)
    return _SequenceParallelScan.apply(a, x, h0, group, backend, rank, world)


def linear_recurrence(a, x, h0=None, *, group=None, backend: str = "auto"):
    """Solve ``h[t] = a[t] h[t-1] + x[t]`` over a sequence whose time axis (axis 0) is split over
    the ranks of ``group`` (default: the whole world), rank order = time order.

    Args:
        a, x: this rank's slice, shape ``(T_r, ...)``; ``T_r`` may differ between ranks and be 0.
            The dims after the time axis, the dtype and the device type must agree on every rank.
        h0: the state before the whole sequence's first step, given on rank 0 only; default 0.
        group: a ``torch.distributed`` process group; default the world.
        backend: the local scan's backend (``lrbench.backends()`` or ``"auto"``).

    Returns:
        This rank's slice of h, differentiable in ``a``, ``x`` and (on rank 0) ``h0``; the
        gradients equal the single-process ones. Every rank must run the backward (it exchanges).
    """
    return linear_recurrence_with_start(a, x, h0, group=group, backend=backend)[0]
