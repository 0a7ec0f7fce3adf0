"""Every CPU backend against the float64 reference, forward and backward, on awkward shapes."""
from __future__ import annotations

import pytest
import torch

from conftest import CPU_BACKENDS, assert_close, make_inputs, run, tolerance

TS = [1, 2, 31, 32, 33, 63, 1000, 1023, 1025, 4097]
NS = [1, 3, 32, 257]
DTYPES = {"fp32": torch.float32, "fp64": torch.float64}


def _cases():
    for backend in CPU_BACKENDS:
        for T in TS:
            if backend == "torch-loop" and T > 1000:
                continue                     # a Python loop: long T adds time, not coverage
            for N in NS:
                for dt in DTYPES:
                    for h0 in (True, False):
                        for rev in (False, True):
                            gates = "long" if (T + N + h0 + rev) % 2 else "sigmoid"
                            yield pytest.param(backend, T, N, dt, h0, rev, gates,
                                               id=f"{backend}-T{T}-N{N}-{dt}-h0{int(h0)}-rev{int(rev)}-{gates}")


@pytest.mark.parametrize("backend,T,N,dt,use_h0,reverse,gates", list(_cases()))
def test_forward_backward_vs_reference(backend, T, N, dt, use_h0, reverse, gates, small_chunks, poisoned):
    dtype = DTYPES[dt]
    a, x, h0 = make_inputs(T, N, dtype, gates, seed=T * 7 + N, h0=use_h0)
    leaf = (lambda t, dt: None if t is None else t.detach().to(dt).clone().requires_grad_())
    a64, x64, h064 = leaf(a, torch.float64), leaf(x, torch.float64), leaf(h0, torch.float64)
    ref = run("reference", a64, x64, h064, reverse=reverse)
    gh = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (ref * gh).sum().backward()

    a_, x_, h0_ = leaf(a, dtype), leaf(x, dtype), leaf(h0, dtype)
    h = run(backend, a_, x_, h0_, reverse=reverse)
    (h * gh.to(dtype)).sum().backward()
    tol = tolerance(backend, dtype)
    assert_close("h", h, ref, **tol)
    assert_close("dx", x_.grad, x64.grad, **tol)
    assert_close("da", a_.grad, a64.grad, **tol)
    if h0 is not None:
        assert_close("dh0", h0_.grad, h064.grad, **tol)
