"""Packed batches (``cu_seqlens``) where one sequence is not finite, or the offsets are not what
they seem: every sequence must come out as if scanned alone, forward and backward, in every mode."""

from __future__ import annotations

import pytest
import torch

import lrbench
from conftest import TOL, assert_close

INF, NAN = float("inf"), float("nan")
BACKENDS = ["cpu-serial", "cpu-chunked", "torch-loop", "torch-assoc", "reference", "auto"]


def _alone(backend, a, x, h0, cu, reverse):
    """Every sequence scanned by its own call, concatenated."""
    bounds = zip(cu[:-1].tolist(), cu[1:].tolist())
    return torch.cat(
        [
            lrbench.linear_recurrence(
                a[s:e], x[s:e], None if h0 is None else h0[b], reverse=reverse, backend=backend
            )
            for b, (s, e) in enumerate(bounds)
        ]
    )


def _grads(fn, leaves, gh):
    """Gradients of ``fn(*leaves)`` against ``gh``; zeros for a leaf that does not reach h."""
    leaves = [t.detach().clone().requires_grad_() for t in leaves]
    got = torch.autograd.grad(fn(*leaves), leaves, gh, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(leaves, got)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bad", [INF, NAN])
def test_an_empty_sequence_ignores_its_h0(backend, reverse, bad):
    """cu = [0, 10, 10, 20] with h0[1] non-finite: the empty sequence's h0 is never read."""
    g = torch.Generator().manual_seed(1)
    a = torch.rand(20, 3, generator=g, dtype=torch.float64)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64)
    h0 = torch.randn(3, 3, generator=g, dtype=torch.float64)
    h0[1] = bad
    cu = torch.tensor([0, 10, 10, 20])
    packed = lambda a, x, h0: lrbench.linear_recurrence(
        a, x, h0, reverse=reverse, backend=backend, cu_seqlens=cu
    )
    want = _alone(backend, a, x, h0, cu, reverse)
    assert_close("h", packed(a, x, h0), want, **TOL[torch.float64])
    gh = torch.randn(20, 3, generator=g, dtype=torch.float64)
    got = _grads(packed, (a, x, h0), gh)
    want = _grads(lambda a, x, h0: _alone(backend, a, x, h0, cu, reverse), (a, x, h0), gh)
    for name, gt, w in zip(("da", "dx", "dh0"), got, want):
        assert_close(name, gt, w, **TOL[torch.float64])
    assert torch.equal(got[2][1], torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("backend", ["auto", "cpu-serial", "torch-loop"])
@pytest.mark.parametrize("reverse", [False, True])
def test_a_gradient_overflow_does_not_leak_into_the_neighbour(backend, reverse):
    """Gates 1.5 over 300 steps (float32): the gradient of that sequence overflows, as it does
    scanned alone; the sequence before it (after it, reversed) keeps finite gradients."""
    g = torch.Generator().manual_seed(2)
    short, long_ = 5, 300
    a = torch.cat([torch.full((short, 2), 0.5), torch.full((long_, 2), 1.5)])
    x = torch.cat([torch.randn(short, 2, generator=g), torch.zeros(long_, 2)])
    h0 = torch.cat([torch.randn(1, 2, generator=g), torch.zeros(1, 2)])  # the long one's h is 0
    cu = torch.tensor([0, short, short + long_])
    if reverse:  # the long sequence first: its adjoint runs up
        a, x, cu = a.flip(0), x.flip(0), torch.tensor([0, long_, short + long_])
        h0 = h0.flip(0)
    packed = lambda a, x, h0: lrbench.linear_recurrence(
        a, x, h0, reverse=reverse, backend=backend, cu_seqlens=cu
    )
    h = packed(a, x, h0)
    assert torch.isfinite(h).all()
    gh = torch.ones_like(x)
    got = _grads(packed, (a, x, h0), gh)
    want = _grads(lambda a, x, h0: _alone(backend, a, x, h0, cu, reverse), (a, x, h0), gh)
    short_rows = slice(long_, None) if reverse else slice(0, short)
    first = 1 if reverse else 0
    for name, gt, w in zip(("da", "dx"), got[:2], want[:2]):
        assert torch.isfinite(gt[short_rows]).all(), f"{name} of the short one: {gt[short_rows]}"
        assert_close(name, gt, w, **TOL[torch.float32])
    assert torch.isfinite(got[2][first]).all(), got[2]
    assert_close("dh0", got[2], want[2], **TOL[torch.float32])


def _offsets(values, dtype):
    return torch.tensor(values, dtype=dtype)


@pytest.mark.parametrize(
    "cu, msg",
    [
        (_offsets([0, 10, 5, 20], torch.uint8), r"non-decreasing; got 10 then 5 at positions 1, 2"),
        (
            _offsets([0, 10, 5, 20], torch.uint16),
            r"non-decreasing; got 10 then 5 at positions 1, 2",
        ),
        (
            _offsets([0, 2**31 - 1, -(2**30), 20], torch.int32),
            rf"non-decreasing; got {2**31 - 1} then {-(2**30)} at positions 1, 2",
        ),
        (
            _offsets([0, 2**63 - 1, -(2**62), 20], torch.int64),
            rf"non-decreasing; got {2**63 - 1} then {-(2**62)} at positions 1, 2",
        ),
        (
            _offsets([0, 2**63, 20], torch.uint64),
            rf"'cu_seqlens' must hold offsets int64 can represent .* got {2**63} at position 1",
        ),
        (
            _offsets([0, 2**64 - 12, 20], torch.uint64),
            rf"'cu_seqlens' must hold offsets int64 can represent .* got {2**64 - 12} at position 1",
        ),
    ],
)
def test_offsets_are_checked_in_int64(cu, msg):
    """Offsets differenced in their own dtype wrap around (uint8 5 - 10 = 251): an impossible
    split passed. They are compared in int64, after an exact conversion."""
    a = torch.rand(20, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=msg) as err:
        lrbench.linear_recurrence(a, a, cu_seqlens=cu)
    assert "\n" not in str(err.value)


def test_small_unsigned_offsets_still_work():
    """Offsets of any integer dtype that int64 holds exactly (uint64 failed in a subtraction)."""
    a, x = torch.rand(20, 2, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    for dtype in (torch.uint8, torch.int16, torch.int32, torch.uint64):
        cu = torch.tensor([0, 5, 5, 20], dtype=dtype)
        assert_close(
            str(dtype),
            lrbench.linear_recurrence(a, x, cu_seqlens=cu),
            _alone("reference", a, x, None, torch.tensor([0, 5, 5, 20]), False),
            **TOL[torch.float64],
        )


def _inf_neighbour():
    """Two sequences of 4; sequence 0 reaches inf, sequence 1 is finite."""
    a = torch.full((8, 2), 0.5, dtype=torch.float64)
    x = torch.ones(8, 2, dtype=torch.float64)
    x[2] = INF
    return a, x, torch.tensor([0, 4, 8])


def test_default_compile_keeps_neighbours_apart():
    """Under torch.compile the packed call runs eagerly (a graph break), its repair included."""
    a, x, cu = _inf_neighbour()
    fn = torch.compile(
        lambda a, x: lrbench.linear_recurrence(a, x, cu_seqlens=cu) * 2, dynamic=False
    )
    want = lambda a, x: _alone("reference", a, x, None, cu, False) * 2
    assert_close("h", fn(a, x), want(a, x), **TOL[torch.float64])
    gh = torch.ones_like(x)
    for name, got, w in zip(("da", "dx"), _grads(fn, (a, x), gh), _grads(want, (a, x), gh)):
        assert_close(name, got, w, **TOL[torch.float64])
        assert torch.isfinite(got[4:]).all(), got


def test_fullgraph_compile_refuses_packed_calls_by_name():
    """fullgraph=True cannot take the graph break: the reason names cu_seqlens and torch.compile."""
    a, x, cu = _inf_neighbour()
    fn = torch.compile(lambda a, x: lrbench.linear_recurrence(a, x, cu_seqlens=cu), fullgraph=True)
    with pytest.raises(Exception, match=r"cu_seqlens.*torch\.compile"):
        fn(a, x)


def test_vmap_over_a_packed_call():
    """vmap over a leading axis of a and x (cu_seqlens shared): each batch entry as if alone,
    and the gradients under vmap too."""
    a, x, cu = _inf_neighbour()
    a = torch.stack([a, a.flip(0) * 0.9])
    x = torch.stack([x, torch.randn(8, 2, dtype=torch.float64)])
    fn = lambda a, x: lrbench.linear_recurrence(a, x, cu_seqlens=cu)
    got = torch.func.vmap(fn)(a, x)
    for i in range(2):
        assert_close(
            f"h[{i}]",
            got[i],
            _alone("reference", a[i], x[i], None, cu, False),
            **TOL[torch.float64],
        )
    grad = torch.func.vmap(torch.func.grad(lambda a, x: fn(a, x)[4:].sum()))(a, x)
    for i in range(2):
        ai = a[i].clone().requires_grad_()
        (want,) = torch.autograd.grad(_alone("reference", ai, x[i], None, cu, False)[4:].sum(), ai)
        assert_close(f"da[{i}]", grad[i], want, **TOL[torch.float64])


def test_vmap_refuses_batched_offsets_by_name():
    """One split for the whole batch: batched offsets are refused by name, not by .item()."""
    a, x, cu = _inf_neighbour()
    fn = lambda a, x, cu: lrbench.linear_recurrence(a, x, cu_seqlens=cu)
    with pytest.raises(ValueError, match=r"'cu_seqlens' .*vmap"):
        torch.func.vmap(fn)(a.expand(2, 8, 2), x.expand(2, 8, 2), cu.expand(2, 3))


def test_double_backward_float64():
    """The packed backward is built from packed calls: second derivatives stay exact."""
    g = torch.Generator().manual_seed(3)
    a = torch.rand(8, 2, generator=g, dtype=torch.float64)
    x = torch.randn(8, 2, generator=g, dtype=torch.float64)
    h0 = torch.randn(4, 2, generator=g, dtype=torch.float64)
    cu = torch.tensor([0, 3, 3, 7, 8])
    for reverse in (False, True):
        fn = lambda a, x, h0: lrbench.linear_recurrence(
            a, x, h0, cu_seqlens=cu, reverse=reverse, backend="cpu-serial"
        )
        inputs = tuple(t.clone().requires_grad_() for t in (a, x, h0))
        assert torch.autograd.gradgradcheck(fn, inputs)


def test_forward_mode_float64():
    """Forward-mode AD (dual tensors) scans every sequence alone: tangents exact."""
    g = torch.Generator().manual_seed(4)
    a = torch.rand(8, 2, generator=g, dtype=torch.float64)
    x = torch.randn(8, 2, generator=g, dtype=torch.float64)
    h0 = torch.randn(3, 2, generator=g, dtype=torch.float64)
    cu = torch.tensor([0, 3, 3, 8])
    fn = lambda a, x, h0: lrbench.linear_recurrence(a, x, h0, cu_seqlens=cu, backend="cpu-serial")
    inputs = tuple(t.clone().requires_grad_() for t in (a, x, h0))
    assert torch.autograd.gradcheck(
        fn,
        inputs,
        check_forward_ad=True,
        check_backward_ad=False,
        check_undefined_grad=False,
        check_batched_grad=False,
    )
