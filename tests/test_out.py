"""``out=``: written in place and returned; wrong or overlapping outputs and autograd refused clearly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lrbench
from conftest import CPU_BACKENDS, assert_close, make_inputs, run, TOL


@pytest.mark.parametrize("backend", ["reference"] + CPU_BACKENDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_out_is_written_in_place_and_returned(backend, reverse, small_chunks):
    a, x, h0 = make_inputs(1000, 3, torch.float64, extra=(2,))
    out = torch.full_like(x, float("nan"))
    ptr = out.data_ptr()
    got = run(backend, a, x, h0, reverse=reverse, out=out)
    assert got is out and out.data_ptr() == ptr
    assert_close("out", out, run("reference", a, x, h0, reverse=reverse), **TOL[torch.float64])


def test_out_with_dim_and_strides():
    a, x, h0 = make_inputs(31, 4, torch.float64, extra=(3,))            # (31, 3, 4)
    a, x = a.movedim(0, 2), x.movedim(0, 2)                             # (3, 4, 31), time last
    out = torch.empty(31, 3, 4, dtype=torch.float64).movedim(0, 2)      # a non-contiguous out
    run("cpu-serial", a, x, h0, dim=2, out=out)
    assert_close("out", out, run("reference", a, x, h0, dim=2), **TOL[torch.float64])


def test_out_numpy():
    a, x, h0 = (t.numpy() for t in make_inputs(33, 2, torch.float64))
    out = np.empty_like(x)
    assert lrbench.linear_recurrence(a, x, h0, out=out) is out
    np.testing.assert_allclose(out, lrbench.linear_recurrence(a, x, h0, backend="reference"), rtol=1e-12)


def test_bad_out_names_out():
    a, x, h0 = make_inputs(8, 3, torch.float32)
    cases = [
        (torch.empty(8, 4), ValueError, r"argument 'out' must have x's shape, dtype and device \(shape \(8, 3\)"),
        (torch.empty(8, 3, dtype=torch.float64), ValueError, r"argument 'out' must have .* got shape \(8, 3\), dtype torch.float64"),
        (torch.empty(8, 3, device="meta"), ValueError, r"argument 'out' must have .* device meta"),
        ([0.0], TypeError, r"argument 'out' must be a torch.Tensor; got list"),
        (x, ValueError, r"argument 'out' overlaps argument 'x' in memory"),
        (a[:, :], ValueError, r"argument 'out' overlaps argument 'a' in memory"),
    ]
    for out, err, msg in cases:
        with pytest.raises(err, match=msg):
            lrbench.linear_recurrence(a, x, h0, out=out)
    both = torch.empty(2, 8, 3)
    lrbench.linear_recurrence(both[0], x, h0, out=both[1])             # same storage, apart: fine
    with pytest.raises(ValueError, match=r"argument 'out' overlaps argument 'h0'"):
        hh = torch.empty(9, 3)
        lrbench.linear_recurrence(a, x, hh[8], out=hh[1:])
    with pytest.raises(TypeError, match=r"argument 'out' must be a numpy array for numpy inputs"):
        lrbench.linear_recurrence(a.numpy(), x.numpy(), out=torch.empty(8, 3))


def test_out_refuses_autograd():
    a, x, h0 = make_inputs(8, 3, torch.float32)
    x.requires_grad_()
    with pytest.raises(RuntimeError, match=r"argument 'out': .* not differentiable, but an input requires grad"):
        lrbench.linear_recurrence(a, x, h0, out=torch.empty(8, 3))
    with torch.no_grad():
        out = lrbench.linear_recurrence(a, x, h0, out=torch.empty(8, 3))
    assert_close("out under no_grad", out, run("reference", a, x.detach(), h0), **TOL[torch.float32])
