"""The backward pass: gradcheck in float64, and the reference's backward against plain autograd."""

from __future__ import annotations

import pytest
import torch

from conftest import CPU_BACKENDS, assert_close, make_inputs, run


@pytest.mark.parametrize("backend", ["reference"] + CPU_BACKENDS)
@pytest.mark.parametrize("T,N", [(1, 1), (2, 3), (7, 2)])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_float64(backend, T, N, reverse, small_chunks):
    a, x, h0 = (t.requires_grad_() for t in make_inputs(T, N, torch.float64, seed=T + N))
    fn = lambda a, x, h0: run(backend, a, x, h0, reverse=reverse)
    assert torch.autograd.gradcheck(fn, (a, x, h0), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("reverse", [False, True])
def test_reference_backward_equals_autograd_of_a_plain_loop(reverse):
    """The paper's backward equations, as the reference writes them, against torch autograd."""
    a, x, h0 = (t.requires_grad_() for t in make_inputs(50, 4, torch.float64, gates="long"))
    gh = torch.randn(50, 4, dtype=torch.float64)
    h, hs = h0, [None] * 50
    for t in range(49, -1, -1) if reverse else range(50):
        h = a[t] * h + x[t]
        hs[t] = h
    want = torch.autograd.grad((torch.stack(hs) * gh).sum(), (a, x, h0))
    got = torch.autograd.grad((run("reference", a, x, h0, reverse=reverse) * gh).sum(), (a, x, h0))
    for name, g, w in zip(("da", "dx", "dh0"), got, want):
        assert_close(name, g, w, rtol=1e-13, atol=1e-13)


def test_no_h0_gives_no_h0_gradient():
    a, x, _ = make_inputs(9, 2, torch.float64, h0=False)
    a.requires_grad_()
    run("cpu-serial", a, x, None).sum().backward()
    assert a.grad is not None and x.grad is None
