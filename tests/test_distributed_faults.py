"""``lrbench.distributed`` under faults and non-finite values, on real gloo process groups.

Every spawn here is bounded (``LIMIT`` seconds, then the ranks are killed and the test fails), so a
rank left waiting on the others is a failure, not a hang. Each rank appends one JSON record per
case to its own file as it goes, so a failure shows how far every rank got.

- the zero-state rule: a state of exactly 0 entering a rank whose gate product overflowed
  contributes exactly 0, forward and backward, as in the single-process scan;
- one rank's bad call ends every rank with the same one-line error, within seconds;
- a second backward with ``retain_graph=True`` gives the single-process gradients;
- a property test against a float64 serial loop with inf, NaN and 0 in the gates and inputs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings, strategies as st

import lrbench
from lrbench.distributed import linear_recurrence, linear_recurrence_with_start, scan
from lrbench.distributed import free_port

LIMIT = 60.0  # seconds for a whole spawn: start-up, every case, shutdown


def _rank_main(rank, world, port, job, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        for record in job(rank, world):
            with open(Path(out_dir) / f"rank{rank}.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
    finally:
        dist.destroy_process_group()


def _records(out_dir: Path, world: int) -> list[list[dict]]:
    paths = [out_dir / f"rank{r}.jsonl" for r in range(world)]
    return [
        [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []
        for p in paths
    ]


def _run(job, world: int, out_dir: Path, limit: float = LIMIT) -> list[list[dict]]:
    """Run ``job(rank, world)`` (a generator of JSON-able records) on ``world`` gloo ranks; every
    rank's records. Fails the test if the ranks are not all done within ``limit`` seconds."""
    ctx = mp.start_processes(
        _rank_main,
        args=(world, free_port(), job, str(out_dir)),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + limit
    try:
        while not ctx.join(timeout=0.5):
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the ranks were not done after {limit:.0f} s (some rank waits on the "
                    f"others); records so far: {_records(out_dir, world)}"
                )
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    return _records(out_dir, world)


def _split(full: torch.Tensor, lengths, rank):
    off = sum(lengths[:rank])
    return full[off : off + lengths[rank]]


def _leaf(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.clone().requires_grad_()


def _same(p: torch.Tensor, q: torch.Tensor, rtol: float = 1e-12) -> bool:
    """The same NaNs, the same infinities, finite values within rtol (of the largest)."""
    p, q = p.detach().double(), q.detach().double()
    if p.shape != q.shape or not torch.equal(p.isnan(), q.isnan()):
        return False
    inf = q.isinf()
    if not torch.equal(p.isinf(), inf) or not torch.equal(p[inf], q[inf]):
        return False
    fin = q.isfinite()
    return not fin.any() or bool(
        (p[fin] - q[fin]).abs().max() <= rtol * max(1.0, q[fin].abs().max())
    )


def _compare(rank, a, x, hz, gh, gs, lengths, backend="cpu-serial", backwards=1):
    """{name: (distributed, single process)} for h, start and the gradients of a, x (and h0 on rank
    0) of the loss ``<h, gh> + <start, gs>``, back-propagated ``backwards`` times (retain_graph on
    all but the last)."""
    A, X, H0 = _leaf(a), _leaf(x), _leaf(hz)
    h = lrbench.linear_recurrence(A, X, H0, backend=backend)
    rest = a.shape[1:]
    before = torch.cat([(H0 if hz is not None else torch.zeros(rest, dtype=a.dtype))[None], h])
    starts = before[[sum(lengths[:r]) for r in range(len(lengths))]]
    for i in range(backwards):
        ((h * gh).sum() + (starts * gs).sum()).backward(retain_graph=i < backwards - 1)

    a_r, x_r = _leaf(_split(a, lengths, rank)), _leaf(_split(x, lengths, rank))
    h0_r = _leaf(hz) if rank == 0 else None
    h_r, s_r = linear_recurrence_with_start(a_r, x_r, h0_r, backend=backend)
    for i in range(backwards):
        ((h_r * _split(gh, lengths, rank)).sum() + (s_r * gs[rank]).sum()).backward(
            retain_graph=i < backwards - 1
        )
    out = {
        "h": (h_r, _split(h, lengths, rank)),
        "start": (s_r, starts[rank]),
        "ga": (a_r.grad, _split(A.grad, lengths, rank)),
        "gx": (x_r.grad, _split(X.grad, lengths, rank)),
    }
    if rank == 0 and hz is not None:
        out["gh0"] = (h0_r.grad, H0.grad)
    return out


def _agrees(p: torch.Tensor, q: torch.Tensor) -> str | None:
    """None where the distributed value ``p`` agrees with the serial ``q``, else what differs.

    Agreeing: NaN where the serial loop has NaN; equal (to rounding) where it is finite; the same
    infinity, or NaN, where it is infinite. That last NaN is the documented limit of any fold of
    per-rank summaries: after an infinite gate (or an overflowing gate product) inside a slice,
    the incoming state's term and the slice's own term are infinities added at the end (NaN if of
    opposite signs), where the loop had added them first as finite numbers."""
    p, q = p.detach().double(), q.detach().double()
    if (q.isnan() & ~p.isnan()).any():
        return "a NaN of the serial loop is not NaN"
    fin = q.isfinite()
    if not torch.allclose(p[fin], q[fin], rtol=1e-12, atol=1e-12):
        return "a finite value differs"
    inf = q.isinf()
    if not (p[inf].isnan() | (p[inf] == q[inf])).all():
        return "an infinite value differs"
    return None


# --- the zero-state rule ------------------------------------------------------------------------


def _zero_state_problem(keep_gradient_after_rank0: bool):
    """Three ranks (3, 2, 4 steps, 3 channels), float64: x = 0 and h0 = 0 through ranks 0-1, so the
    state is exactly 0 there, and rank 1's gates are 1e200 (their product overflows to inf)."""
    g = torch.Generator().manual_seed(5)
    lengths, T, N = (3, 2, 4), 9, 3
    a = torch.sigmoid(torch.randn(T, N, generator=g, dtype=torch.float64))
    x = torch.randn(T, N, generator=g, dtype=torch.float64)
    a[3:5], x[:5] = 1e200, 0.0
    gh = torch.randn(T, N, generator=g, dtype=torch.float64)
    gs = torch.randn(3, N, generator=g, dtype=torch.float64)
    if not keep_gradient_after_rank0:  # the gradient reaching rank 1's end is exactly 0
        gh[3:], gs[1:] = 0.0, 0.0
    return lengths, a, x, gh, gs


def _zero_state(rank, world):
    for keep in (True, False):
        lengths, a, x, gh, gs = _zero_state_problem(keep)
        for hz in (None, torch.zeros(3, dtype=torch.float64)):
            pairs = _compare(rank, a, x, hz, gh, gs, lengths)
            yield {
                "keep": keep,
                "h0": hz is not None,
                "nonfinite_reference": [k for k, (_, q) in pairs.items() if not q.isfinite().all()],
                "differ": {k: why for k, (p, q) in pairs.items() if (why := _agrees(p, q))},
            }


def test_zero_state_through_overflowed_gates_matches_one_process(tmp_path):
    records = _run(_zero_state, 3, tmp_path)
    assert [len(recs) for recs in records] == [4, 4, 4], records
    differ = [(rank, rec) for rank, recs in enumerate(records) for rec in recs if rec["differ"]]
    assert not differ, differ
    # the single-process result is finite on rank 2, and everywhere when nothing comes back past
    # rank 1 (else the gradients through the 1e200 gates overflow on rank 0, where the fold may
    # give NaN for the loop's inf: see _agrees)
    assert all(rec["nonfinite_reference"] == [] for rec in records[2]), records[2]
    assert all(
        rec["nonfinite_reference"] == [] for recs in records for rec in recs if not rec["keep"]
    )


# --- one rank fails: every rank raises the same error, at once ----------------------------------


def _good_call(rank, world):
    """A small correct call after a failed one: the group is still usable and in step."""
    g = torch.Generator().manual_seed(1)
    a = torch.rand(3 * world, 2, generator=g, dtype=torch.float64)
    x = torch.randn(3 * world, 2, generator=g, dtype=torch.float64)
    h = linear_recurrence(a[3 * rank : 3 * rank + 3], x[3 * rank : 3 * rank + 3])
    ref = lrbench.linear_recurrence(a, x)[3 * rank : 3 * rank + 3]
    return torch.allclose(h, ref, rtol=1e-12, atol=0)


class _Injected(Exception):
    pass


@contextlib.contextmanager
def _local_scan_fails(on: bool):
    """This rank's local scans raise an exception type no check knows (where ``on``)."""

    def raising(*args, **kwargs):
        raise _Injected("injected failure of the local scan")

    real = scan.local_recurrence
    scan.local_recurrence = raising if on else real
    try:
        yield
    finally:
        scan.local_recurrence = real


def _fault_call(rank, world, case):
    """One call of the case on this rank (the arguments differ between ranks), then its backward."""
    g = torch.Generator().manual_seed(rank)
    a = torch.rand(4, 3, generator=g, dtype=torch.float64).requires_grad_()
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    backend, fails = "cpu-serial", False
    if case == "backend typo on rank 1":
        backend = "cpu-seral" if rank == 1 else backend
    elif case == "dtype refused by rank 2's backend":
        a = torch.rand(4, 3, generator=g, dtype=torch.complex128).requires_grad_()
        x = x.to(torch.complex128)
        backend = "log-space" if rank == 2 else "torch-loop"
    elif case == "log-space gate <= 0 on rank 1":
        backend = "log-space"
        if rank == 1:
            a = a.detach().index_fill(0, torch.tensor([2]), -0.5).requires_grad_()
    elif case == "a=None on rank 0":
        a = None if rank == 0 else a
    elif case == "x of another shape on rank 1":
        x = x[:3] if rank == 1 else x
    elif case == "ranks 0 and 2 fail differently":
        a = None if rank == 0 else a
        backend = "cpu-seral" if rank == 2 else backend
    elif case == "rank 0's local scan raises an unexpected exception":
        fails = rank == 0
    elif case == "middle rank's local scan raises an unexpected exception":
        fails = rank == 1
    with _local_scan_fails(fails):
        h = linear_recurrence(a, x, backend=backend)
    h.abs().sum().backward()


FAULTS = {  # case: (exception type on every rank, pattern of the message on every rank)
    "backend typo on rank 1": (
        ValueError,
        r"^rank 1 of 3: unknown backend 'cpu-seral'; choose 'auto' or one of ",
    ),
    "dtype refused by rank 2's backend": (
        TypeError,
        r"^rank 2 of 3: backend 'log-space' cannot take dtype torch\.complex128",
    ),
    "log-space gate <= 0 on rank 1": (
        ValueError,
        r"^rank 1 of 3: backend 'log-space' needs every gate a > 0; argument 'a' has "
        r"3 of 12 entries",
    ),
    "a=None on rank 0": (
        TypeError,
        r"^rank 0 of 3: argument 'a' must be a torch\.Tensor .*; got NoneType$",
    ),
    "x of another shape on rank 1": (
        ValueError,
        r"^rank 1 of 3: arguments 'a' and 'x' must have the same shape; got a "
        r"\(4, 3\) and x \(3, 3\)$",
    ),
    "ranks 0 and 2 fail differently": (
        TypeError,
        r"^rank 0 of 3: argument 'a' must be .*; rank 2 of 3: unknown backend "
        r"'cpu-seral'",
    ),
    "rank 0's local scan raises an unexpected exception": (
        RuntimeError,
        r"^rank 0 of 3: _Injected: injected failure of the local scan$",
    ),
    "middle rank's local scan raises an unexpected exception": (
        RuntimeError,
        r"^rank 1 of 3: _Injected: injected failure of the local scan$",
    ),
}


def _faults(rank, world, cases=tuple(FAULTS)):
    for case in cases:
        t0 = time.monotonic()
        try:
            _fault_call(rank, world, case)
            rec = {"case": case, "error": None}
        except Exception as e:
            rec = {"case": case, "error": type(e).__name__, "message": str(e)}
        rec["seconds"] = time.monotonic() - t0
        rec["then_a_good_call"] = _good_call(rank, world)
        yield rec
    # a rank that never calls: the others give up after scan.TIMEOUT_S, with a clear error
    scan.TIMEOUT_S = 3.0
    t0 = time.monotonic()
    rec = {"case": "rank 2 never calls", "error": None}
    if rank == 2:
        time.sleep(2 * scan.TIMEOUT_S)  # busy elsewhere, in the group all along
    else:
        try:
            linear_recurrence(torch.ones(2, 2), torch.ones(2, 2))
        except Exception as e:
            rec.update(error=type(e).__name__, message=str(e))
    rec["seconds"] = time.monotonic() - t0
    yield rec


def test_one_rank_fails_every_rank_raises_the_same_error_at_once(tmp_path):
    records = _run(_faults, 3, tmp_path)
    for rank, recs in enumerate(records):
        assert [r["case"] for r in recs] == [*FAULTS, "rank 2 never calls"], (rank, recs)
    for i, (case, (exc, pattern)) in enumerate(FAULTS.items()):
        got = [recs[i] for recs in records]
        assert all(r["error"] == exc.__name__ for r in got), (case, got)
        assert len({r["message"] for r in got}) == 1, (case, got)  # the same message
        assert re.search(pattern, got[0]["message"]), (case, got[0]["message"])
        assert "\n" not in got[0]["message"], (case, got[0]["message"])  # one line
        assert all(r["seconds"] < 10 for r in got), (case, got)  # no waiting
        assert all(r["then_a_good_call"] for r in got), (case, got)
    hung = [recs[-1] for recs in records]
    assert hung[2]["error"] is None, hung
    for r in hung[:2]:
        assert r["error"] == "RuntimeError" and 2.5 < r["seconds"] < 20, hung
        assert re.search(
            r"^rank [01] of 3: no answer from the other ranks in the exchange of "
            r"headers \(waited at most 3 s\): .*process group may be unusable now$",
            r["message"],
        ), hung


# --- a second backward through the same graph ---------------------------------------------------


def _double_backward(rank, world):
    g = torch.Generator().manual_seed(3)
    lengths, rest = (5, 4, 6), (2, 3)
    T = sum(lengths)
    a = torch.sigmoid(torch.randn(T, *rest, generator=g, dtype=torch.float64))
    x = torch.randn(T, *rest, generator=g, dtype=torch.float64)
    hz = torch.randn(rest, generator=g, dtype=torch.float64)
    gh = torch.randn(T, *rest, generator=g, dtype=torch.float64)
    gs = torch.randn(3, *rest, generator=g, dtype=torch.float64)
    for backend in ("cpu-serial", "torch-loop"):
        for backwards in (2, 3):
            pairs = _compare(rank, a, x, hz, gh, gs, lengths, backend=backend, backwards=backwards)
            yield {
                "backend": backend,
                "backwards": backwards,
                "differ": [k for k, (p, q) in pairs.items() if not _same(p, q, 1e-10)],
            }
    # without retain_graph the graph is freed: a second backward fails on every rank alike
    a_r = _split(a, lengths, rank).clone().requires_grad_()
    h = linear_recurrence(a_r, _split(x, lengths, rank))
    h.sum().backward()
    try:
        h.sum().backward()
        yield {"second": None}
    except RuntimeError as e:
        yield {"second": str(e)}


def test_second_backward_with_retain_graph_matches_one_process(tmp_path):
    records = _run(_double_backward, 3, tmp_path)
    for rank, recs in enumerate(records):
        assert len(recs) == 5, (rank, recs)
        assert all(r["differ"] == [] for r in recs[:4]), (rank, recs)
        assert "backward through the graph a second time" in (recs[4]["second"] or ""), (rank, recs)


# --- property: non-finite values against a float64 serial loop ------------------------------------

GATES = (0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, math.inf, -math.inf, math.nan)
INPUTS = (0.0, 1.0, -1.0, 3.0, -3.0, math.inf, -math.inf, math.nan)


def _serial(a, x, h0, gh, gs, lengths):
    """The float64 loop ``h = a[t] h + x[t]`` with autograd: h, the start of every slice, and the
    gradients of ``<h, gh> + <start, gs>`` (a, x, h0)."""
    a, x = a.clone().requires_grad_(), x.clone().requires_grad_()
    h0 = h0.clone().requires_grad_() if h0 is not None else None
    c = h0 if h0 is not None else torch.zeros(a.shape[1:], dtype=a.dtype)
    states = [c]
    for t in range(a.shape[0]):
        c = a[t] * c + x[t]
        states.append(c)
    h = torch.stack(states[1:]) if a.shape[0] else a.new_zeros(a.shape)
    starts = torch.stack([states[sum(lengths[:r])] for r in range(len(lengths))])
    loss = (h * gh).sum() + (starts * gs).sum()
    wrt = [a, x] + ([h0] if h0 is not None else [])
    grads = torch.autograd.grad(loss, wrt, allow_unused=True) if loss.requires_grad else [None] * 3
    grads = [g if g is not None else torch.zeros_like(v) for g, v in zip(grads, wrt)]
    return h.detach(), starts.detach(), grads


def _case(lengths, a, x, gh, gs, h0=None, backend="torch-loop"):
    return {
        "lengths": lengths,
        "N": 1,
        "a": a,
        "x": x,
        "h0": h0,
        "gh": gh,
        "gs": gs,
        "backend": backend,
    }


BIG = 1e200  # two of them overflow a product
EXTRA = [
    # a state of exactly 0 through ranks 0-1, rank 1's gate product inf: everything finite
    _case([2, 3, 2], [0.5, 1, BIG, BIG, BIG, 0.5, -1], [0, 0, 0, 0, 0, 1, 1], [1] * 7, [1, 0, 1]),
    # ... and no gradient coming back past rank 0 (exactly 0 at rank 1's end): finite gradients
    _case(
        [2, 3, 2],
        [0.5, 1, BIG, BIG, BIG, 0.5, -1],
        [0, 0, 0, 0, 0, 1, 1],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 0, 0],
    ),
    # rank 1's gates overflow, then 0: the gradient from rank 2 stops at the 0 (finite on rank 0)
    _case([1, 3, 1], [0.5, BIG, BIG, 0, 1], [1] * 5, [1, 0, 0, 0, 1], [1, 0, 1]),
    # rank 1's gates 0, then overflowing: the gradient from rank 2 overflows into the 0 (NaN)
    _case([1, 3, 1], [0.5, 0, BIG, BIG, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 0, 1]),
    # an infinite first gate after an exactly-0 state (NaN, as serially), and after a state of 1
    _case([1, 2, 2], [1, math.inf, 1, 2, 1], [0, 0, 1, 1, 1], [1] * 5, [1, 1, 1]),
    _case([1, 2, 2], [1, math.inf, 1, 2, 1], [1, 0, 1, 1, 1], [1] * 5, [1, 1, 1], h0=[0.0]),
]


def _property_cases(cases, rank, world):
    for i, case in enumerate(cases):
        lengths, N = case["lengths"], case["N"]
        T = sum(lengths)
        a = torch.tensor(case["a"], dtype=torch.float64).reshape(T, N)
        x = torch.tensor(case["x"], dtype=torch.float64).reshape(T, N)
        h0 = torch.tensor(case["h0"], dtype=torch.float64) if case["h0"] is not None else None
        gh = torch.tensor(case["gh"], dtype=torch.float64).reshape(T, N)
        gs = torch.tensor(case["gs"], dtype=torch.float64).reshape(world, N)
        h, starts, grads = _serial(a, x, h0, gh, gs, lengths)
        a_r, x_r = _leaf(_split(a, lengths, rank)), _leaf(_split(x, lengths, rank))
        h0_r = _leaf(h0) if rank == 0 else None
        h_r, s_r = linear_recurrence_with_start(a_r, x_r, h0_r, backend=case["backend"])
        ((h_r * _split(gh, lengths, rank)).sum() + (s_r * gs[rank]).sum()).backward()
        pairs = {
            "h": (h_r, _split(h, lengths, rank)),
            "start": (s_r, starts[rank]),
            "ga": (a_r.grad, _split(grads[0], lengths, rank)),
            "gx": (x_r.grad, _split(grads[1], lengths, rank)),
        }
        if h0_r is not None:
            pairs["gh0"] = (h0_r.grad, grads[2])
        yield {"case": i, "bad": {k: why for k, (p, q) in pairs.items() if (why := _agrees(p, q))}}


@st.composite
def _nonfinite_problems(draw, world=3):
    """Short sequences split over ``world`` ranks (slices of 0-4 steps), 1-3 channels, of one of two
    families that the fold and the loop round alike:

    - signed small values (exact in float64), 0, +-inf and NaN: every inf · 0 and inf - inf;
    - non-negative small values, 0, +inf, and gates of 1e200 in one rank's slice only: two of
      them overflow any nonzero state, and one never does (nothing cancels). Gates of 1e200 in two
      slices would make the overflow depend on the state's magnitude: the fold's limit."""
    lengths = draw(st.lists(st.integers(0, 4), min_size=world, max_size=world))
    N = draw(st.integers(1, 3))
    T = sum(lengths)
    if draw(st.booleans()):
        gates = [st.sampled_from(GATES[:7] * 4 + GATES[7:])] * T  # about 1 in 10 not finite
        value = st.sampled_from(INPUTS[:5] * 4 + INPUTS[5:])
        grad = st.sampled_from((0.0, 1.0, -1.0, 2.0))
    else:
        big = draw(st.integers(0, world - 1))
        gates = [
            st.sampled_from((0.0, 0.5, 1.0, 2.0, math.inf) + (BIG,) * 3 * (r == big))
            for r in range(world)
            for _ in range(lengths[r])
        ]
        value = st.sampled_from((0.0, 0.0, 0.0, 0.0, 1.0, 3.0, math.inf))
        grad = st.sampled_from((0.0, 0.0, 1.0, 2.0))
    return {
        "lengths": lengths,
        "N": N,
        "a": [draw(g) for g in gates for _ in range(N)],
        "x": draw(st.lists(value, min_size=T * N, max_size=T * N)),
        "h0": draw(st.one_of(st.none(), st.lists(value, min_size=N, max_size=N))),
        "gh": draw(st.lists(grad, min_size=T * N, max_size=T * N)),
        "gs": draw(st.lists(grad, min_size=world * N, max_size=world * N)),
        "backend": draw(st.sampled_from(["torch-loop", "cpu-serial"])),
    }


def test_property_nonfinite_values_against_a_serial_loop(tmp_path):
    """Hypothesis draws the problems here; one spawn of three ranks runs them all (a spawn per
    example would take minutes). A failure names the drawn problem."""
    cases = []

    @settings(max_examples=15, deadline=None, database=None)
    @given(_nonfinite_problems())
    def draw(case):
        cases.append(case)

    draw()
    cases += EXTRA
    records = _run(functools.partial(_property_cases, cases), 3, tmp_path)
    assert [len(recs) for recs in records] == [len(cases)] * 3, records
    bad = [
        (rank, rec["bad"], cases[rec["case"]])
        for rank, recs in enumerate(records)
        for rec in recs
        if rec["bad"]
    ]
    assert not bad, "\n".join(map(str, bad))
