"""Packed variable-length batches (``cu_seqlens``) against a per-sequence reference."""

from __future__ import annotations

import pytest
import torch

import lrbench
from conftest import CPU_BACKENDS, assert_close, run, TOL

LENGTHS = [5, 0, 1, 33, 2, 0, 17]  # empty sequences in the middle and at the end: [.., 0]


def _packed(lengths, N, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    a = torch.rand(total, N, generator=g, dtype=torch.float64).to(dtype)
    x = torch.randn(total, N, generator=g, dtype=torch.float64).to(dtype)
    h0 = torch.randn(len(lengths), N, generator=g, dtype=torch.float64).to(dtype)
    cu = torch.tensor([0] + lengths, dtype=torch.int64).cumsum(0)
    return a, x, h0, cu


def _per_sequence(a, x, h0, cu, reverse):
    parts = [
        run("reference", a[s:e], x[s:e], h0[b] if h0 is not None else None, reverse=reverse)
        for b, (s, e) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist()))
    ]
    return torch.cat(parts)


@pytest.mark.parametrize(
    "backend", [b for b in CPU_BACKENDS if b != "log-space"] + ["triton-scan", "auto"]
)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_packed_matches_each_sequence_alone(backend, reverse, with_h0, small_chunks):
    for lengths in (LENGTHS, LENGTHS + [0], [0, 1000], [1]):
        dtype = torch.float32 if backend == "triton-scan" else torch.float64
        a, x, h0, cu = _packed(lengths, 3, dtype)
        h0 = h0 if with_h0 else None
        want = _per_sequence(a, x, h0, cu, reverse)
        assert_close(
            "h", run(backend, a, x, h0, reverse=reverse, cu_seqlens=cu), want, **TOL[dtype]
        )
        leaves = [t.clone().requires_grad_() for t in (a, x) + ((h0,) if with_h0 else ())]
        gh = torch.randn_like(x)
        got = torch.autograd.grad(
            (
                run(
                    backend,
                    *leaves[:2],
                    leaves[2] if with_h0 else None,
                    reverse=reverse,
                    cu_seqlens=cu,
                )
                * gh
            ).sum(),
            leaves,
        )
        refs = [t.clone().requires_grad_() for t in leaves]
        ref_h = _per_sequence(refs[0], refs[1], refs[2] if with_h0 else None, cu, reverse)
        wants = torch.autograd.grad((ref_h * gh).sum(), refs)
        for name, g, w in zip(("da", "dx", "dh0"), got, wants):
            assert_close(name, g, w, **TOL[dtype])


def test_packed_gradcheck_float64():
    a, x, h0, cu = _packed([3, 0, 4, 1], 2, torch.float64)
    fn = lambda a, x, h0: lrbench.linear_recurrence(a, x, h0, cu_seqlens=cu, backend="cpu-serial")
    assert torch.autograd.gradcheck(fn, tuple(t.requires_grad_() for t in (a, x, h0)))


def test_packed_other_axis_and_numpy():
    a, x, h0, cu = _packed([4, 6], 3, torch.float64)
    got = lrbench.linear_recurrence(a.T, x.T, h0, dim=1, cu_seqlens=cu)
    assert_close("dim=1", got.T, _per_sequence(a, x, h0, cu, False), **TOL[torch.float64])
    got = lrbench.linear_recurrence(a.numpy(), x.numpy(), h0.numpy(), cu_seqlens=cu.numpy())
    assert_close(
        "numpy", torch.from_numpy(got), _per_sequence(a, x, h0, cu, False), **TOL[torch.float64]
    )


def test_bad_cu_seqlens_names_it():
    a, x, h0, _ = _packed([3, 4], 2, torch.float64)
    cases = [
        (
            torch.tensor([1, 3, 7]),
            r"'cu_seqlens' must start at 0 and end at total_T = 7 .* got 1 \.\.\. 7",
        ),
        (
            torch.tensor([0, 3, 6]),
            r"'cu_seqlens' must start at 0 and end at total_T = 7 .* got 0 \.\.\. 6",
        ),
        (
            torch.tensor([0, 5, 3, 7]),
            r"'cu_seqlens' must be non-decreasing; got 5 then 3 at positions 1, 2",
        ),
        (
            torch.tensor([[0, 7]]),
            r"'cu_seqlens' must be a 1-d integer tensor .* got shape \(1, 2\)",
        ),
        (
            torch.tensor([0.0, 7.0]),
            r"'cu_seqlens' must be a 1-d integer tensor .* dtype torch.float32",
        ),
        ([0, 7], r"'cu_seqlens' must be a torch.Tensor of int64 offsets; got list"),
    ]
    for cu, msg in cases:
        with pytest.raises((ValueError, TypeError), match=msg):
            lrbench.linear_recurrence(a, x, cu_seqlens=cu)
    with pytest.raises(
        ValueError, match=r"'h0' must hold one state per sequence of 'cu_seqlens' \(2\); got 3"
    ):
        lrbench.linear_recurrence(
            a, x, torch.zeros(3, 2, dtype=torch.float64), cu_seqlens=torch.tensor([0, 3, 7])
        )
    with pytest.raises(ValueError, match=r"'h0' must have shape \(B,\) \+ \(2,\) with cu_seqlens"):
        lrbench.linear_recurrence(a, x, h0[0], cu_seqlens=torch.tensor([0, 3, 7]))
    with pytest.raises(ValueError, match=r"backend 'log-space' cannot take argument 'cu_seqlens'"):
        lrbench.linear_recurrence(a, x, backend="log-space", cu_seqlens=torch.tensor([0, 3, 7]))


@pytest.mark.parametrize("backend", ["cpu-serial", "cpu-chunked", "torch-assoc", "reference"])
@pytest.mark.parametrize("reverse", [False, True])
def test_a_non_finite_neighbour_does_not_leak(backend, reverse):
    """A reset is a gate of 0, and 0 * inf is NaN: a sequence after an inf state is recomputed
    alone, forward and backward."""
    a = torch.tensor([[2.0], [2.0], [0.5], [0.5], [0.5]], dtype=torch.float64)
    x = torch.tensor([[1.0], [float("inf")], [1.0], [1.0], [2.0]], dtype=torch.float64)
    cu = torch.tensor([0, 2, 5])
    if reverse:
        a, x, cu = a.flip(0), x.flip(0), torch.tensor([0, 3, 5])
    a.requires_grad_()
    h = run(backend, a, x, None, reverse=reverse, cu_seqlens=cu)
    second = slice(0, 3) if reverse else slice(2, 5)
    alone = run("reference", a.detach()[second], x[second], None, reverse=reverse)
    assert_close("h", h[second], alone, **TOL[torch.float64])
    (ga,) = torch.autograd.grad(h[second].sum(), a)
    assert torch.isfinite(ga).all() and ga[second].abs().sum() > 0, ga
    out = torch.empty_like(x)
    with torch.no_grad():
        run(backend, a, x, None, reverse=reverse, cu_seqlens=cu, out=out)
    assert_close("out", out[second], alone, **TOL[torch.float64])
