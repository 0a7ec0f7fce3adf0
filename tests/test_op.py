"""The torch.library operator: opcheck, torch.compile, torch.export, vmap, forward mode, Hessians."""

from __future__ import annotations

import pytest
import torch

import lrbench
from conftest import CPU_BACKENDS, assert_close, make_inputs, run
from lrbench import op
from lrbench.models.layers import GILRLSTM

OPCHECK_BACKENDS = ["reference"] + CPU_BACKENDS + ["triton-scan", "auto"]
# torch's eager associative_scan vmaps its combine function, which fails inside the dispatch modes
# opcheck runs the real kernel under ("querying is_contiguous inside of vmap"); only the
# registration check applies to torch-assoc. Calls outside opcheck, compiled ones included, work.
OPCHECK_SKIP = {"torch-assoc": ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")}


def _opcheck(backend, fn, args, kwargs=None):
    tests = [
        t
        for t in (
            "test_schema",
            "test_autograd_registration",
            "test_faketensor",
            "test_aot_dispatch_dynamic",
        )
        if t not in OPCHECK_SKIP.get(backend, ())
    ]
    torch.library.opcheck(fn, args, kwargs or {}, test_utils=tests)


@pytest.mark.parametrize("backend", OPCHECK_BACKENDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_opcheck(backend, reverse):
    dtype = torch.float32 if backend == "triton-scan" else torch.float64
    a, x, h0 = make_inputs(33, 3, dtype, extra=(2,))
    grad = [t.clone().requires_grad_() for t in (a, x, h0)]
    _opcheck(backend, op.scan_op, (*grad, reverse, backend))
    _opcheck(backend, op.scan_op, (grad[0], grad[1], None, reverse, backend))
    _opcheck(backend, op.scan_out_op, (a, x, h0, reverse, backend), {"out": torch.empty_like(x)})
    _opcheck(backend, op.scan_backward_op, (a, x, h0, torch.randn_like(x), reverse, backend))


def test_compile_fullgraph_gilr_lstm_dynamic_T():
    """One compiled graph, forward and backward, serves every T; equal to eager."""
    torch.manual_seed(0)
    model = GILRLSTM(5, 8, scan_backend="cpu-serial").double()
    compiled = torch.compile(model, fullgraph=True, dynamic=True)

    def check(T):
        x = torch.randn(T, 2, 5, dtype=torch.float64)
        got = compiled(x)
        got.sum().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        want = model(x)
        want.sum().backward()
        assert_close("h", got, want, rtol=1e-12, atol=1e-12)
        for g, p in zip(grads, model.parameters()):
            assert_close("grad", g, p.grad, rtol=1e-12, atol=1e-12)
        model.zero_grad()

    check(9)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for T in (17, 40):
            check(T)


def test_export_holds_the_operator():
    model = GILRLSTM(5, 8)
    ep = torch.export.export(
        model, (torch.randn(9, 2, 5),), dynamic_shapes={"x": {0: torch.export.Dim("T", min=3)}}
    )
    assert sum("lrbench.scan" in str(n.target) for n in ep.graph.nodes) == 2
    x = torch.randn(50, 2, 5)
    assert_close("exported", ep.module()(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["cpu-serial", "cpu-chunked", "torch-loop"])
def test_vmap_over_an_extra_axis(backend):
    a, x, h0 = make_inputs(31, 3, torch.float64, extra=(4,))  # (31, 4, 3): vmap over axis 1
    fn = lambda a, x, h0: run(backend, a, x, h0)
    got = torch.func.vmap(fn, in_dims=(1, 1, 0))(a, x, h0)  # (4, 31, 3)
    want = torch.stack([run("reference", a[:, i], x[:, i], h0[i]) for i in range(4)])
    assert_close("vmap", got, want, rtol=1e-12, atol=1e-12)
    shared = torch.func.vmap(fn, in_dims=(None, 1, None))(a[:, 0], x, h0[0])  # unbatched a, h0
    want = torch.stack([run("reference", a[:, 0], x[:, i], h0[0]) for i in range(4)])
    assert_close("vmap, unbatched a", shared, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference"] + CPU_BACKENDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_jvp_and_jacobians_against_finite_differences(backend, reverse):
    a, x, h0 = make_inputs(7, 2, torch.float64, seed=3)
    fn = lambda a, x, h0: run(backend, a, x, h0, reverse=reverse)
    tangents = tuple(torch.randn_like(t) for t in (a, x, h0))
    _, jvp = torch.func.jvp(fn, (a, x, h0), tangents)
    eps = 1e-6
    fd = (
        fn(*(p + eps * t for p, t in zip((a, x, h0), tangents)))
        - fn(*(p - eps * t for p, t in zip((a, x, h0), tangents)))
    ) / (2 * eps)
    assert_close("jvp", jvp, fd, rtol=1e-7, atol=1e-8)
    rev = torch.func.jacrev(fn, argnums=(0, 1, 2))(a, x, h0)
    fwd = torch.func.jacfwd(fn, argnums=(0, 1, 2))(a, x, h0)
    for name, r, f in zip(("a", "x", "h0"), rev, fwd):
        assert_close(f"jacrev vs jacfwd d/d{name}", r, f, rtol=1e-12, atol=1e-12)
    col = torch.stack([jvp.reshape(-1)])
    by_jac = sum(j.reshape(14, -1) @ t.reshape(-1) for j, t in zip(rev, tangents))
    assert_close("jacrev . tangent", by_jac, col[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference"] + CPU_BACKENDS)
@pytest.mark.parametrize("T", [1, 2, 7])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradgradcheck_float64(backend, T, reverse, small_chunks):
    a, x, h0 = (t.requires_grad_() for t in make_inputs(T, 2, torch.float64, seed=T))
    fn = lambda a, x, h0: run(backend, a, x, h0, reverse=reverse)
    assert torch.autograd.gradgradcheck(fn, (a, x, h0), eps=1e-6, atol=1e-7, rtol=1e-5)


def _loop(a, x, h0, reverse):
    h, hs = h0, [None] * a.shape[0]
    for t in range(a.shape[0] - 1, -1, -1) if reverse else range(a.shape[0]):
        h = a[t] * h + x[t]
        hs[t] = h
    return torch.stack(hs)


@pytest.mark.parametrize("backend", ["cpu-serial", "cpu-chunked", "torch-assoc", "log-space"])
@pytest.mark.parametrize("reverse", [False, True])
def test_hessian_vector_products_match_a_plain_loop(backend, reverse):
    """A nonlinear loss, so the Hessian is not zero; torch's own loop gives the truth."""
    a, x, h0 = make_inputs(33, 3, torch.float64, seed=5)
    loss = lambda f: (lambda a, x, h0: (f(a, x, h0) ** 3).sum())
    ours = loss(lambda a, x, h0: run(backend, a, x, h0, reverse=reverse))
    plain = loss(lambda a, x, h0: _loop(a, x, h0, reverse))
    v = tuple(torch.randn_like(t) for t in (a, x, h0))
    _, got = torch.autograd.functional.hvp(ours, (a, x, h0), v)
    _, want = torch.autograd.functional.hvp(plain, (a, x, h0), v)
    for name, g, w in zip(("a", "x", "h0"), got, want):
        assert w.abs().max() > 0
        assert_close(f"Hv ({name})", g, w, rtol=1e-11, atol=1e-11)


def test_hessian_is_not_zero():
    """The old once_differentiable backward made this silently zero."""
    a, x, h0 = make_inputs(5, 1, torch.float64)
    H = torch.autograd.functional.hessian(lambda a: (run("cpu-serial", a, x, h0) ** 2).sum(), a)
    assert H.abs().sum() > 0


def test_no_dynamic_import_on_the_call_path(monkeypatch):
    """After the first call a backend is a dictionary lookup; importlib is never touched again."""
    a, x, h0 = make_inputs(5, 2, torch.float32)
    lrbench.linear_recurrence(a, x, h0, backend="cpu-serial")
    import importlib

    def refuse(*args, **kw):
        raise AssertionError("import_module on the call path")

    monkeypatch.setattr(importlib, "import_module", refuse)
    lrbench.linear_recurrence(a, x, h0, backend="cpu-serial")


@pytest.mark.parametrize("backend", ["cpu-serial", "cpu-chunked", "reference"])
def test_forward_ad_dual_tensors(backend):
    """torch.autograd.forward_ad (not only torch.func): the tangent is carried, not dropped."""
    a, x, h0 = (t.requires_grad_() for t in make_inputs(6, 2, torch.float64, seed=4))
    fn = lambda a, x, h0: run(backend, a, x, h0)
    assert torch.autograd.gradcheck(fn, (a, x, h0), check_forward_ad=True, check_backward_ad=False)


def test_jit_trace_keeps_the_call():
    a, x, _ = make_inputs(8, 2, torch.float64)
    traced = torch.jit.trace(lambda a, x: run("cpu-serial", a, x, None), (a, x), check_trace=False)
    a2, x2, _ = make_inputs(8, 2, torch.float64, seed=9)
    assert_close("traced", traced(a2, x2), run("reference", a2, x2, None), rtol=1e-12, atol=1e-12)
