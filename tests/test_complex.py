"""Complex gates (LRU/S5 diagonal recurrences): forward against the complex128 reference, backward
in torch's conjugate (Wirtinger) convention, and backends without complex saying so by name."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close, run, TOL

COMPLEX_BACKENDS = ["torch-loop", "cpu-serial", "cpu-chunked", "auto"]
TOL_COMPLEX = {torch.complex64: TOL[torch.float32], torch.complex128: TOL[torch.float64]}


def _inputs(T, N, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda: torch.rand(T, N, generator=g, dtype=torch.float64)
    a = 0.99 * r() * torch.exp(2j * torch.pi * r())  # |a| < 1, any phase
    x = torch.complex(
        torch.randn(T, N, generator=g, dtype=torch.float64),
        torch.randn(T, N, generator=g, dtype=torch.float64),
    )
    h0 = torch.complex(
        torch.randn(N, generator=g, dtype=torch.float64),
        torch.randn(N, generator=g, dtype=torch.float64),
    )
    return a.to(dtype), x.to(dtype), h0.to(dtype)


@pytest.mark.parametrize("backend", COMPLEX_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("T,N", [(1, 1), (2, 3), (33, 1), (1000, 5), (1025, 1)])
@pytest.mark.parametrize("reverse", [False, True])
def test_complex_forward(backend, dtype, T, N, reverse, small_chunks):
    a, x, h0 = _inputs(T, N, dtype, seed=T + N)
    assert_close(
        "h",
        run(backend, a, x, h0, reverse=reverse),
        run(
            "reference",
            a.to(torch.complex128),
            x.to(torch.complex128),
            h0.to(torch.complex128),
            reverse=reverse,
        ),
        **TOL_COMPLEX[dtype],
    )


@pytest.mark.parametrize("backend", ["reference"] + COMPLEX_BACKENDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_complex_gradcheck_and_gradgradcheck(backend, reverse, small_chunks):
    a, x, h0 = (t.requires_grad_() for t in _inputs(7, 2, torch.complex128, seed=1))
    fn = lambda a, x, h0: run(backend, a, x, h0, reverse=reverse)
    assert torch.autograd.gradcheck(fn, (a, x, h0))
    assert torch.autograd.gradgradcheck(fn, (a, x, h0))


def test_complex_backward_matches_a_plain_loop():
    """The conjugate convention, checked against torch's own autograd of the loop."""
    a, x, h0 = (t.requires_grad_() for t in _inputs(40, 3, torch.complex128, seed=2))
    gh = _inputs(40, 3, torch.complex128, seed=3)[1]
    h, hs = h0, []
    for t in range(40):
        h = a[t] * h + x[t]
        hs.append(h)
    want = torch.autograd.grad((torch.stack(hs) * gh).real.sum(), (a, x, h0))
    got = torch.autograd.grad((run("cpu-chunked", a, x, h0) * gh).real.sum(), (a, x, h0))
    for name, g, w in zip(("da", "dx", "dh0"), got, want):
        assert_close(name, g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["torch-assoc", "log-space"])
def test_backends_without_complex_say_so(backend):
    a, x, h0 = _inputs(5, 2, torch.complex64)
    with pytest.raises(TypeError, match=rf"backend '{backend}' cannot take dtype torch.complex64"):
        run(backend, a, x, h0)


def test_conjugate_views_are_read_as_values():
    """Inputs and outputs with torch's lazy conjugate bit (``t.conj()``)."""
    a, x, h0 = _inputs(9, 2, torch.complex128, seed=5)
    want = run("reference", a.conj().resolve_conj(), x, h0.conj().resolve_conj())
    for backend in ("cpu-serial", "cpu-chunked", "torch-loop"):
        assert_close(
            backend, run(backend, a.conj(), x, h0.conj()), want, **TOL_COMPLEX[torch.complex128]
        )
    out = torch.empty_like(x).conj()
    run("cpu-serial", a.conj(), x, h0.conj(), out=out)
    assert_close("out with the conjugate bit", out, want, **TOL_COMPLEX[torch.complex128])


@pytest.mark.parametrize("backend", ["cpu-serial", "cpu-chunked"])
def test_the_backward_kernel_reads_lazily_conjugated_and_negated_operands(backend):
    """``lrbench::scan_backward`` given views with the conjugate or negative bit (as autograd
    may hand it an incoming gradient) computes what it computes from their values."""
    a, x, h0 = _inputs(33, 3, torch.complex128, seed=7)
    h = torch.ops.lrbench.scan(a, x, h0, False, backend)
    gh = torch.randn(33, 3, dtype=torch.complex128, generator=torch.Generator().manual_seed(8))
    want = torch.ops.lrbench.scan_backward(a, h, h0, gh, False, backend)

    def conj_bit(t):  # t's values, held as the lazy conjugate of their conjugate
        v = t.conj().resolve_conj().conj()
        assert v.is_conj()
        return v

    lazy = [
        (conj_bit(a), h, h0, conj_bit(gh)),
        (a, conj_bit(h), conj_bit(h0), gh),
    ]
    if hasattr(torch, "_neg_view"):
        lazy.append((a, h, h0, torch._neg_view(-gh)))
    for args in lazy:
        got = torch.ops.lrbench.scan_backward(*args, False, backend)
        for g, w in zip(got, want):
            assert_close("backward of lazy views", g, w, **TOL_COMPLEX[torch.complex128])


def test_an_out_with_the_negative_bit_gets_the_values():
    """``out=`` a view with torch's lazy negation: the result is what it reads back, not its
    negative (the kernels write raw memory, so such an out is written through a copy)."""
    if not hasattr(torch, "_neg_view"):
        pytest.skip("torch has no _neg_view")
    a, x = torch.rand(40, 4, dtype=torch.float64), torch.randn(40, 4, dtype=torch.float64)
    want = run("reference", a, x, None)
    out = torch._neg_view(torch.zeros(40, 4, dtype=torch.float64))
    assert out.is_neg() and out.is_contiguous()
    run("cpu-serial", a, x, None, out=out)
    assert_close("out with the negative bit", out, want, **TOL[torch.float64])
