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
backward again. The last rank and rank 0 run the local backward once. The local graphs are saved
tensors of the call, so ``backward(retain_graph=True)`` keeps them for another backward, as in one
process, and a backward without it frees them.

Non-finite values, as the serial loop has them (the rule of the single-process parallel kernels).
A state of exactly 0 entering a slice contributes exactly 0, never ``A_k · 0`` (NaN once the gate
product overflowed): the fold takes the slice's own answer from 0, ``Z_k``, which is ``H_k`` unless
the slice's first gate is not finite (then NaN, the loop's ``a[0] · 0``, and ``H_k`` is the scan
after that step). The backward's fold likewise adds nothing for an exactly-0 gradient. After a gate
of 0 the state no longer depends on the start, so ``A_k`` is the product of the gates before the
first 0, times 0 (0, or NaN where those overflowed: inf · 0 as serially), and the backward's gate
product the gates after the last 0, times 0. ``Z`` and the backward's product, where they differ
from ``H`` and ``A`` on some rank, travel as extra rows of the same all-gather. What no fold of
summaries can give: after an infinite gate inside a slice, a nonzero incoming state and the slice's
own part are infinities added at the end (NaN where of opposite signs) where the loop added them
as finite numbers first; and an overflow that depends on the state's magnitude.

Summaries are exchanged and folded in float32 for 16-bit inputs (the input dtype otherwise, complex
included: the backward's fold multiplies by conj(A), torch's convention); the carry is rounded once
to the input dtype to start the re-scan. The local scans and their backward
are ``lrbench.linear_recurrence`` and its autograd, with any backend.

Errors. Each rank first does everything it can alone: the checks of its arguments and of the
backend (its name, dtype, device and value constraints, e.g. log-space's a > 0), rank 0's scan and
a middle rank's summaries. Then the ranks all-gather a small header (this rank's verdict, dtype, N,
layout, whether h0 is given, whether autograd records, which extra rows it needs). A rank that
failed sends the length of its error message, and the ranks all-gather the messages: every rank
raises the same one-line error, naming the rank(s) (TypeError, ValueError or RuntimeError; any
other exception is a RuntimeError naming its type). A mismatch between ranks is one error on every
rank too, never a hang or a crash in the transport. Every collective waits at most ``TIMEOUT_S``
seconds (None: the process group's timeout), then raises naming the exchange it waited in.
"""

from __future__ import annotations

import functools
import math
import operator
import zlib
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable

from .. import auto_backend, registry
from .. import linear_recurrence as local_recurrence
from ..checks import check_backend, check_inputs
from ..scan._common import ANY_FLOAT

# header dtype codes (an index; unknown dtypes get len(DTYPES)); every rank runs the same lrbench
DTYPES = ANY_FLOAT
HALF = (torch.float16, torch.bfloat16)
VERDICT, HAS_H0, GRAD, DTYPE, T_, N_, LAYOUT, FLAGS = range(8)  # header fields
FIRST, BACKWARD = 1, 2  # FLAGS bits: a row for Z; a row for the backward's gate product
KINDS = {"TypeError": TypeError, "ValueError": ValueError, "RuntimeError": RuntimeError}
TIMEOUT_S: float | None = None  # the most one collective waits; None: the process group's timeout


@dataclass
class Traffic:
    """What this process's collectives moved: calls, and payload bytes received from other ranks
    (an all-gather of s bytes per rank brings (P-1)·s to each). Transport framing not included."""

    collectives: int = 0
    bytes_received: int = 0

    def reset(self) -> None:
        self.collectives, self.bytes_received = 0, 0


traffic = Traffic()


def _all_gather(t: torch.Tensor, group, world: int, what: str = "summaries") -> torch.Tensor:
    """(P, *t.shape): every rank's ``t`` in rank order. ``what``: the exchange, for a timeout."""
    flat = t.reshape(-1).contiguous()
    out = flat.new_empty(world * flat.numel())
    _wait(dist.all_gather_single(out, flat, group=group, async_op=True), group, world, what)
    traffic.collectives += 1
    traffic.bytes_received += (world - 1) * flat.numel() * flat.element_size()
    return out.view(world, *t.shape)


def _wait(work, group, world: int, what: str) -> None:
    """Wait for a collective at most ``TIMEOUT_S`` seconds (None: the process group's timeout)."""
    limit = "the process group's timeout" if TIMEOUT_S is None else f"{TIMEOUT_S:g} s"
    try:
        done = work.wait() if TIMEOUT_S is None else work.wait(timedelta(seconds=TIMEOUT_S))
        why = "" if done is not False else "the wait returned unfinished"
    except RuntimeError as e:
        why = " ".join(str(e).split())
    if why:
        rank = dist.get_rank(group)
        raise RuntimeError(
            f"rank {rank} of {world}: no answer from the other ranks in the "
            f"exchange of {what} (waited at most {limit}): {why}; a rank failed "
            f"outside lrbench.distributed or stopped calling it, and the process "
            f"group may be unusable now"
        )


def _group_position(group) -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "lrbench.distributed.linear_recurrence needs an initialised process group: "
            "call torch.distributed.init_process_group first (torchrun sets its "
            "environment), or use lrbench.linear_recurrence on one process"
        )
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError(
            "argument 'group': this process is not a member of the given process group"
        )
    return rank, dist.get_world_size(group)


def _header_device(a, group) -> torch.device:
    if isinstance(a, torch.Tensor):
        return a.device
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _validate(a, x, h0, backend) -> None:
    """Every check one rank can make alone, with lrbench's usual messages: the arguments, and
    whether the backend takes them (name, dtype, device, its own value check)."""
    for name, t in (("a", a), ("x", x), ("h0", h0)):
        if (t is not None or name != "h0") and not isinstance(t, torch.Tensor):
            raise TypeError(
                f"argument {name!r} must be a torch.Tensor (NumPy arrays cannot go "
                f"through torch.distributed); got {type(t).__name__}"
            )
    check_inputs(a, x, h0, 0)
    if not isinstance(backend, str):
        raise TypeError(
            f"argument 'backend' must be a str (a name from lrbench.backends() or "
            f"'auto'); got {type(backend).__name__}"
        )
    if backend != "auto":
        registry.get(backend)  # an unknown name
    T, N = a.shape[0], math.prod(a.shape[1:])
    if T and N:
        name = auto_backend(T, N, a.dtype, a.device) if backend == "auto" else backend
        mod = registry.get(name).load()  # unavailable here: RuntimeError
        check_backend(name, mod, a)
        if hasattr(mod, "check"):
            mod.check(a.reshape(T, N), x.reshape(T, N), None if h0 is None else h0.reshape(N))


def _note(error: Exception) -> bytes:
    """An error as the other ranks receive it: its kind (another exception type is a RuntimeError
    naming it) and its message on one line."""
    kind = next((k for k, cls in KINDS.items() if isinstance(error, cls)), None)
    text = " ".join(str(error).split()) or type(error).__name__
    if kind is None:
        kind, text = "RuntimeError", f"{type(error).__name__}: {text}"
    return f"{kind}\n{text}".encode()


def _shared_error(notes: list[tuple[int, bytes]], world: int) -> Exception:
    """One error from every failing rank's note, the same on every rank: the first failing rank's
    kind; each message once, after the rank(s) that raised it."""
    kind = notes[0][1].decode(errors="replace").split("\n", 1)[0]
    ranks: dict[str, list[int]] = {}
    for r, note in notes:
        ranks.setdefault(note.decode(errors="replace").split("\n", 1)[-1], []).append(r)
    text = "; ".join(
        f"{f'rank {rs[0]}' if len(rs) == 1 else f'ranks {rs}'} of {world}: {m}"
        for m, rs in ranks.items()
    )
    return KINDS.get(kind, RuntimeError)(text)


def _agree(header: torch.Tensor, error: Exception | None, device, group, world: int):
    """All-gather the headers, (P, fields). If a rank failed (its VERDICT is the length of its
    note), all-gather the notes and raise the same error on every rank."""
    note = b"" if error is None else _note(error)
    header[VERDICT] = len(note)
    heads = _all_gather(header.to(device), group, world, "headers").cpu()
    lengths = heads[:, VERDICT].tolist()
    if not any(lengths):
        return heads
    buf = torch.zeros(max(lengths), dtype=torch.uint8)
    buf[: len(note)] = torch.tensor(list(note), dtype=torch.uint8)
    got = _all_gather(buf.to(device), group, world, "error messages").cpu()
    notes = [(r, bytes(got[r, :n].tolist())) for r, n in enumerate(lengths) if n]
    raise _shared_error(notes, world) from error


def _check_agreement(heads: torch.Tensor) -> None:
    """The ranks' headers describe one sequence; the same error on every rank where they do not."""
    if heads[1:, HAS_H0].any():
        bad = (heads[1:, HAS_H0].nonzero().flatten() + 1).tolist()
        raise ValueError(
            f"argument 'h0' was given on rank(s) {bad}; only rank 0 may give it (the "
            f"state before the first step of the whole sequence); the others start "
            f"where the previous rank ends"
        )
    names = [str(DTYPES[i]) if i < len(DTYPES) else "other" for i in heads[:, DTYPE].tolist()]
    if len(set(names)) > 1:
        raise TypeError(
            f"arguments 'a' and 'x' must have the same dtype on every rank; got "
            f"{', '.join(f'rank {r}: {n}' for r, n in enumerate(names))}"
        )
    if len(set(heads[:, N_].tolist())) > 1:
        Ns = ", ".join(f"rank {r}: N={n}" for r, n in enumerate(heads[:, N_].tolist()))
        raise ValueError(
            f"arguments 'a' and 'x' must have the same N (product of the dims after "
            f"the time axis) on every rank; got {Ns}"
        )
    if len(set(heads[:, LAYOUT].tolist())) > 1:
        same: dict[int, list[int]] = {}
        for r, layout in enumerate(heads[:, LAYOUT].tolist()):
            same.setdefault(layout, []).append(r)
        raise ValueError(
            f"arguments 'a' and 'x' must have the same shape after the time axis on "
            f"every rank; N agrees but the dims differ (ranks with the same dims: "
            f"{', '.join(map(str, same.values()))})"
        )
    if len(set(heads[:, GRAD].tolist())) > 1:
        on = heads[:, GRAD].nonzero().flatten().tolist()
        raise RuntimeError(
            f"autograd records this call on rank(s) {on} only; the backward "
            f"exchanges between ranks, so every rank must record it or none"
        )


class _Local:
    """One rank's local scan, kept as a small autograd graph so the backward can run it twice."""

    def __init__(self, a, x, start, backend, grad: bool):
        with torch.enable_grad() if grad else torch.no_grad():
            leaves = [t.detach().requires_grad_(grad) for t in (a, x)]
            if start is not None:
                leaves.append(start.detach().requires_grad_(grad))
            self.h = local_recurrence(*leaves, dim=0, backend=backend)
        self.leaves = leaves

    @classmethod
    def restore(cls, tensors) -> _Local:
        """The graph from ``tensors()``, as the autograd context saved them."""
        local = cls.__new__(cls)
        local.h, local.leaves = tensors[0], list(tensors[1:])
        return local

    def tensors(self) -> list[torch.Tensor]:
        return [self.h, *self.leaves]

    def grads(self, gh):
        """(ga, gx, g_start or None) for the gradient ``gh`` of this slice's h. The graph stays: it
        goes with the call's saved tensors (freed by a backward without retain_graph)."""
        out = torch.autograd.grad(self.h, self.leaves, gh, retain_graph=True)
        return out[0], out[1], (out[2] if len(out) > 2 else None)


@torch.no_grad()
def _reset_products(gates: torch.Tensor, sdt) -> tuple[torch.Tensor, torch.Tensor]:
    """(forward, backward) gate products of channels with a gate of 0: after the 0 the state no
    longer depends on the start, so each is the product of the gates it meets before its first 0
    (forward: the gates before the first 0; backward: those after the last 0), times 0: 0, or NaN
    where those were not finite together (inf · 0, as in the serial loop)."""
    T = gates.shape[0]
    zero = (gates == 0).to(torch.uint8)
    steps = torch.arange(T, device=gates.device).unsqueeze(1)
    first, last = zero.argmax(0), T - 1 - zero.flip(0).argmax(0)
    one = torch.ones((), dtype=gates.dtype, device=gates.device)
    fwd = torch.where(steps < first, gates, one).prod(0, dtype=sdt)
    bwd = torch.where(steps > last, gates, one).prod(0, dtype=sdt)
    return fwd * 0, bwd * 0


@torch.no_grad()
def _summaries(a, x, backend, sdt, grad: bool):
    """A middle rank's map of the state, ``(A, H, Z, Ab, flags)`` of (N,) tensors in ``sdt``: a
    state s != 0 at the start ends as ``A s + H``, a state of exactly 0 as ``Z``; ``Ab`` is the
    backward's gate product (when autograd records). ``flags`` says where Z differs from H
    (FIRST) and Ab from A (BACKWARD)."""
    T, N = a.shape[0], math.prod(a.shape[1:])
    gates = a.reshape(T, N)
    A = torch.prod(gates, dim=0, dtype=sdt)
    H = local_recurrence(a, x, dim=0, backend=backend)[-1].reshape(N).to(sdt)
    Z, Ab, flags = H, A, 0
    if not torch.isfinite(gates[0]).all():  # the scan from 0 is NaN there (a[0] · 0): that is Z
        flags |= FIRST
        after = x[0] if T == 1 else local_recurrence(a[1:], x[1:], x[0], dim=0, backend=backend)[-1]
        H = after.reshape(N).to(sdt)
    # A gate of 0 makes the product 0 or NaN (inf · 0, in an order of torch's choosing); so does an
    # underflow (no 0), and the backward's product may differ only where a 0 gave 0.
    suspect = A.isnan() | (A == 0) if grad else A.isnan()
    if suspect.any():
        cols = ((gates == 0).any(0) & suspect).nonzero().flatten()
        if cols.numel():
            fwd, bwd = _reset_products(gates[:, cols], sdt)
            A, Ab = A.index_copy(0, cols, fwd), A.index_copy(0, cols, bwd)
            if grad and not torch.equal(fwd.isnan(), bwd.isnan()):
                flags |= BACKWARD
    return A, H, Z, Ab, flags


@dataclass
class _Part:
    """This rank's share of one call, as far as it goes before the exchange of summaries."""

    rank: int
    world: int
    group: object
    backend: str
    grad: bool
    local: _Local | None = None  # rank 0's scan
    rows: tuple = ()  # (A, H, Z, Ab), (N,) each: see _summaries
    flags: int = 0  # this rank's FLAGS; after the header, every rank's OR


def _local_work(a, x, h0, part: _Part) -> None:
    """What this rank can do before the exchange: rank 0 scans from h0, a middle rank summarises."""
    T, rest = a.shape[0], a.shape[1:]
    N, sdt = math.prod(rest), torch.float32 if a.dtype in HALF else a.dtype
    A, H = torch.ones(N, dtype=sdt, device=a.device), torch.zeros(N, dtype=sdt, device=a.device)
    Z, Ab = H, A
    if part.rank == 0:
        if T:
            part.local = _Local(a, x, h0, part.backend, part.grad)
            H = part.local.h[-1].detach().reshape(N).to(sdt)
        else:
            H = (h0 if h0 is not None else a.new_zeros(rest)).detach().reshape(N).to(sdt)
    elif part.rank < part.world - 1 and T:
        A, H, Z, Ab, part.flags = _summaries(a, x, part.backend, sdt, part.grad)
    part.rows = (A, H, Z, Ab)


def _header(a, h0, part: _Part | None) -> torch.Tensor:
    header = torch.zeros(8, dtype=torch.int64)
    if part is not None:
        rest = tuple(a.shape[1:])
        header[HAS_H0], header[GRAD], header[FLAGS] = h0 is not None, part.grad, part.flags
        header[DTYPE] = DTYPES.index(a.dtype) if a.dtype in DTYPES else len(DTYPES)
        header[T_], header[N_] = a.shape[0], math.prod(rest)
        header[LAYOUT] = zlib.crc32(repr(rest).encode())
    return header


def _prepare(a, x, h0, group, backend, rank: int, world: int, grad: bool) -> _Part:
    """Validate and do the local work, then agree: the same error on every rank, or every rank's
    part ready for the exchange (``flags``: the extra rows the ranks need)."""
    part = error = None
    try:
        _validate(a, x, h0, backend)
        part = _Part(rank, world, group, backend, grad)
        _local_work(a, x, h0, part)
    except Exception as e:  # every kind: the other ranks must hear of it
        part, error = None, e
    heads = _agree(_header(a, h0, part), error, _header_device(a, group), group, world)
    _check_agreement(heads)
    part.flags = functools.reduce(operator.or_, heads[:, FLAGS].tolist(), 0)
    return part


def _fold(rows: torch.Tensor, rank: int, z: int) -> torch.Tensor:
    """The state before rank ``rank``'s first step from the gathered rows (P, R, N): rank 0's end
    state, then each predecessor's map in rank order; a state of exactly 0 ends as Z (row ``z``)."""
    c = rows[0, 1]
    for k in range(1, rank):
        c = torch.where(c == 0, rows[k, z], rows[k, 0] * c + rows[k, 1])
    return c


def _fold_back(Gs: torch.Tensor, Ab: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """The gradient reaching rank ``rank``'s end from its successors, folded in the order P-1, ...,
    rank+1; an exactly-0 gradient adds nothing (``conj``: torch's complex convention)."""
    c = Gs[world - 1]
    for k in range(world - 2, rank, -1):
        c = torch.where(c == 0, Gs[k], Ab[k].conj() * c + Gs[k])
    return c


class _SequenceParallelScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, x, h0, part: _Part):
        rank, world, grad = part.rank, part.world, part.grad
        T, rest, dtype = a.shape[0], a.shape[1:], a.dtype
        N = math.prod(rest)
        local, Ab = part.local, None
        rows = [part.rows[0], part.rows[1]]
        z = 2 if part.flags & FIRST else 1
        if part.flags & FIRST:
            rows.append(part.rows[2])
        if part.flags & BACKWARD:
            rows.append(part.rows[3])
        if world > 1 and N:
            gathered = _all_gather(torch.stack(rows), part.group, world)  # (P, R, N)
            Ab = gathered[:, -1 if part.flags & BACKWARD else 0]
        if rank == 0:
            start = h0.clone() if h0 is not None else a.new_zeros(rest)
        else:
            c = _fold(gathered, rank, z) if N else part.rows[1]
            start = c.to(dtype).reshape(rest)
            if T:
                local = _Local(a, x, start, part.backend, grad)
        # every rank saves a tensor, so a backward through a freed graph fails on every rank alike
        ctx.save_for_backward(
            Ab if Ab is not None else a.new_empty(0),
            *(local.tensors() if local is not None else ()),
        )
        ctx.group, ctx.rank, ctx.world, ctx.shape = part.group, rank, world, a.shape
        ctx.sdt, ctx.has_h0 = part.rows[0].dtype, h0 is not None
        h = local.h.detach() if local is not None else a.new_empty(a.shape)
        return h, start

    @staticmethod
    @once_differentiable
    def backward(ctx, gh, gstart):
        saved = ctx.saved_tensors
        Ab, local = saved[0], (_Local.restore(saved[1:]) if len(saved) > 1 else None)
        rank, world, sdt = ctx.rank, ctx.world, ctx.sdt
        T, N, rest = ctx.shape[0], math.prod(ctx.shape[1:]), ctx.shape[1:]
        last = rank == world - 1
        ga = gx = gc = None
        G = torch.zeros(N, dtype=sdt, device=gh.device)  # this rank's G (rank 0's is never used)
        if rank > 0:
            G = gstart.reshape(N).to(sdt)
            if T:
                ga, gx, gc = local.grads(gh)
                G = G + gc.reshape(N).to(sdt)
        if world > 1 and N:
            Gs = _all_gather(G, ctx.group, world, "gradients")  # (P, N)
        if not last:
            c = _fold_back(Gs, Ab, rank, world) if N else G
            if T:
                gh = gh.clone()
                gh[-1] = (gh[-1].reshape(N).to(sdt) + c).to(gh.dtype).reshape(rest)
                ga, gx, gc = local.grads(gh)
            else:
                ga, gx = gh.new_zeros(ctx.shape), gh.new_zeros(ctx.shape)
                gc = c.to(gh.dtype).reshape(rest)
        elif not T:
            ga, gx = gh.new_zeros(ctx.shape), gh.new_zeros(ctx.shape)
        elif rank == 0:  # one rank: no exchange at all
            ga, gx, gc = local.grads(gh)
        gh0 = None
        if rank == 0 and ctx.has_h0:
            gh0 = gstart + (gc if gc is not None else 0)
        return ga, gx, gh0, None


def linear_recurrence_with_start(a, x, h0=None, *, group=None, backend: str = "auto"):
    """``(h, start)``: this rank's slice of h and the state before its first step (rank 0: ``h0``,
    or zeros; rank r: where rank r-1 ends), both differentiable. The GILR-LSTM's "previous"
    surrogate shifts h by one step and takes its first element from ``start``."""
    rank, world = _group_position(group)
    grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (a, x, h0)
    )
    part = _prepare(a, x, h0, group, backend, rank, world, grad)
    return _SequenceParallelScan.apply(a, x, h0, part)


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
        A bad argument on any rank is the same error on every rank.
    """
    return linear_recurrence_with_start(a, x, h0, group=group, backend=backend)[0]
