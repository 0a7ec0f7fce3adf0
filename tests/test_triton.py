"""triton-scan against the float64 reference in Triton's interpreter (CPU), forward and backward."""

from __future__ import annotations

import pytest
import torch

import lrbench
from conftest import assert_close, make_inputs, run, tolerance
from lrbench.scan import triton_scan

pytestmark = pytest.mark.skipif(
    not triton_scan.INTERPRET or triton_scan.UNAVAILABLE is not None,
    reason="runs in Triton's interpreter (TRITON_INTERPRET=1, no GPU); "
    "the GPU tests cover the compiled kernel",
)


@pytest.mark.parametrize("T", [1, 2, 15, 16, 17, 31, 33, 100])
@pytest.mark.parametrize("N", [1, 3, 16, 17, 40])
@pytest.mark.parametrize(
    "use_h0,reverse", [(True, False), (False, True), (True, True), (False, False)]
)
def test_forward_backward_vs_reference(T, N, use_h0, reverse, poisoned):
    a, x, h0 = make_inputs(T, N, torch.float32, "sigmoid", seed=T * 31 + N, h0=use_h0)
    leaf = lambda t, dt: None if t is None else t.detach().to(dt).clone().requires_grad_()
    a64, x64, h064 = leaf(a, torch.float64), leaf(x, torch.float64), leaf(h0, torch.float64)
    ref = run("reference", a64, x64, h064, reverse=reverse)
    gh = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (ref * gh).sum().backward()
    a_, x_, h0_ = leaf(a, torch.float32), leaf(x, torch.float32), leaf(h0, torch.float32)
    h = run("triton-scan", a_, x_, h0_, reverse=reverse)
    (h * gh.float()).sum().backward()
    tol = tolerance("triton-scan", torch.float32)
    assert_close("h", h, ref, **tol)
    assert_close("dx", x_.grad, x64.grad, **tol)
    assert_close("da", a_.grad, a64.grad, **tol)
    if use_h0:
        assert_close("dh0", h0_.grad, h064.grad, **tol)


def test_deterministic():
    a, x, h0 = make_inputs(70, 19, torch.float32, "long", seed=5)
    h1 = lrbench.linear_recurrence(a, x, h0, backend="triton-scan")
    h2 = lrbench.linear_recurrence(a, x, h0, backend="triton-scan")
    assert torch.equal(h1, h2)
