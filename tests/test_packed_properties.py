"""Property test: a packed batch (``cu_seqlens``) against a float64 serial loop over each sequence
alone, forward and backward, with inf, NaN and 0 in a, x and h0 and empty sequences."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import lrbench
from conftest import TOL, assert_close

N = 2
SPECIAL = [0.0, float("inf"), -float("inf"), float("nan")]
FINITE = st.floats(-1.5, 1.5)


def _loop(a, x, h0, reverse):
    """h of one sequence by the serial loop, differentiable (autograd through every step)."""
    h = h0 if h0 is not None else torch.zeros(a.shape[1:], dtype=a.dtype)
    rows = [None] * a.shape[0]
    for t in reversed(range(a.shape[0])) if reverse else range(a.shape[0]):
        h = a[t] * h + x[t]
        rows[t] = h
    return torch.stack(rows) if rows else torch.zeros_like(x)


def _each_alone(a, x, h0, cu, reverse):
    bounds = zip(cu[:-1].tolist(), cu[1:].tolist())
    return torch.cat(
        [
            _loop(a[s:e], x[s:e], None if h0 is None else h0[b], reverse)
            for b, (s, e) in enumerate(bounds)
        ]
    )


def _grads(fn, leaves, gh):
    leaves = [t.detach().clone().requires_grad_() for t in leaves]
    h = fn(*leaves)
    if not h.requires_grad:  # every sequence empty: nothing reaches h
        return [torch.zeros_like(t) for t in leaves]
    got = torch.autograd.grad(h, leaves, gh, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(leaves, got)]


def _rows(draw, n, dirty):
    """n rows of N values: finite in [-1.5, 1.5], or (dirty) with 0, inf, -inf and NaN too."""
    values = st.one_of(FINITE, st.sampled_from(SPECIAL)) if dirty else FINITE
    return torch.tensor(
        draw(st.lists(values, min_size=n * N, max_size=n * N)), dtype=torch.float64
    ).reshape(n, N)


@st.composite
def packed_batches(draw):
    """(a, x, h0, gh, cu, reverse): 1 to 4 sequences of 0 to 6 steps, each clean or dirty (so that
    a leak shows as a non-finite value in a clean neighbour)."""
    lengths = draw(st.lists(st.integers(0, 6), min_size=1, max_size=4))
    dirty = draw(st.lists(st.booleans(), min_size=len(lengths), max_size=len(lengths)))
    a = torch.cat([_rows(draw, n, d) for n, d in zip(lengths, dirty)])
    x = torch.cat([_rows(draw, n, d) for n, d in zip(lengths, dirty)])
    h0 = torch.cat([_rows(draw, 1, d) for d in dirty]) if draw(st.booleans()) else None
    gh = _rows(draw, sum(lengths), False)
    cu = torch.tensor([0] + lengths).cumsum(0)
    return a, x, h0, gh, cu, draw(st.booleans())


def _batch(a, x, h0, lengths, reverse):
    t = lambda rows: torch.tensor(rows, dtype=torch.float64).reshape(len(rows), 1).expand(-1, N)
    T = sum(lengths)
    return (
        t(a),
        t(x),
        None if h0 is None else t(h0),
        torch.linspace(-1, 1, T * N).reshape(T, N),
        torch.tensor([0] + lengths).cumsum(0),
        reverse,
    )


INF, NAN = float("inf"), float("nan")
EXAMPLES = [  # found by review: an empty sequence's h0; an inf gradient at a reset, both ways
    _batch([0.5] * 4, [1.0] * 4, [0.3, INF, 0.2], [2, 0, 2], False),
    _batch([0.5] * 4, [1.0] * 4, [0.3, NAN, 0.2], [2, 0, 2], True),
    _batch([0.5, 0.5, 0.5, INF, 0.5], [1.0] * 5, None, [2, 3], False),
    _batch([0.5, INF, 0.5, 0.5, 0.5], [1.0] * 5, None, [3, 2], True),
    _batch([0.0, INF, 1.0, 0.0], [0.0] * 4, None, [3, 1], False),  # torch-assoc: 0 * inf inside
]


def _backend_alone(backend, a, x, h0, cu, reverse):
    """Every sequence by its own call of ``backend``: the reference for a backend whose results
    with inf and NaN differ from the loop's (an associative scan's products)."""
    bounds = zip(cu[:-1].tolist(), cu[1:].tolist())
    return torch.cat(
        [
            lrbench.linear_recurrence(
                a[s:e], x[s:e], None if h0 is None else h0[b], reverse=reverse, backend=backend
            )
            for b, (s, e) in enumerate(bounds)
        ]
    )


@pytest.mark.parametrize(
    "backend, reference",
    [
        ("cpu-serial", "loop"),
        ("cpu-chunked", "loop"),
        ("torch-loop", "loop"),
        ("torch-assoc", "alone"),
    ],
)
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # small_chunks: constant
@given(batch=packed_batches())
@example(batch=EXAMPLES[0])
@example(batch=EXAMPLES[1])
@example(batch=EXAMPLES[2])
@example(batch=EXAMPLES[3])
@example(batch=EXAMPLES[4])
def test_packed_is_each_sequence_alone(backend, reference, batch, small_chunks):
    """h, da, dx and dh0 of the packed call against the float64 serial loop over each sequence
    (``loop``), or against each sequence by its own call of the same backend (``alone``)."""
    a, x, h0, gh, cu, reverse = batch
    packed = lambda a, x, *h0: lrbench.linear_recurrence(
        a, x, *h0, reverse=reverse, backend=backend, cu_seqlens=cu
    )
    if reference == "loop":
        alone = lambda a, x, *h0: _each_alone(a, x, *(h0 or [None]), cu, reverse)
    else:
        alone = lambda a, x, *h0: _backend_alone(backend, a, x, *(h0 or [None]), cu, reverse)
    leaves = (a, x) if h0 is None else (a, x, h0)
    assert_close("h", packed(*leaves), alone(*leaves), **TOL[torch.float64])
    for name, got, want in zip(
        ("da", "dx", "dh0"), _grads(packed, leaves, gh), _grads(alone, leaves, gh)
    ):
        assert_close(name, got, want, **TOL[torch.float64])
