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
    a, x, h0 = make_inputs(31, 4, torch.float64, extra=(3,))  # (31, 3, 4)
    a, x = a.movedim(0, 2), x.movedim(0, 2)  # (3, 4, 31), time last
    out = torch.empty(31, 3, 4, dtype=torch.float64).movedim(0, 2)  # a non-contiguous out
    run("cpu-serial", a, x, h0, dim=2, out=out)
    assert_close("out", out, run("reference", a, x, h0, dim=2), **TOL[torch.float64])


def test_out_numpy():
    a, x, h0 = (t.numpy() for t in make_inputs(33, 2, torch.float64))
    out = np.empty_like(x)
    assert lrbench.linear_recurrence(a, x, h0, out=out) is out
    np.testing.assert_allclose(
        out, lrbench.linear_recurrence(a, x, h0, backend="reference"), rtol=1e-12
    )


def test_bad_out_names_out():
    a, x, h0 = make_inputs(8, 3, torch.float32)
    cases = [
        (
            torch.empty(8, 4),
            ValueError,
            r"argument 'out' must have x's shape, dtype and device \(shape \(8, 3\)",
        ),
        (
            torch.empty(8, 3, dtype=torch.float64),
            ValueError,
            r"argument 'out' must have .* got shape \(8, 3\), dtype torch.float64",
        ),
        (torch.empty(8, 3, device="meta"), ValueError, r"argument 'out' must have .* device meta"),
        ([0.0], TypeError, r"argument 'out' must be a torch.Tensor; got list"),
        (x, ValueError, r"argument 'out' overlaps argument 'x' in memory"),
        (a[:, :], ValueError, r"argument 'out' overlaps argument 'a' in memory"),
    ]
    for out, err, msg in cases:
        with pytest.raises(err, match=msg):
            lrbench.linear_recurrence(a, x, h0, out=out)
    both = torch.empty(2, 8, 3)
    lrbench.linear_recurrence(both[0], x, h0, out=both[1])  # same storage, apart: fine
    with pytest.raises(ValueError, match=r"argument 'out' overlaps argument 'h0'"):
        hh = torch.empty(9, 3)
        lrbench.linear_recurrence(a, x, hh[8], out=hh[1:])
    with pytest.raises(TypeError, match=r"argument 'out' must be a numpy array for numpy inputs"):
        lrbench.linear_recurrence(a.numpy(), x.numpy(), out=torch.empty(8, 3))


def test_out_refuses_autograd():
    a, x, h0 = make_inputs(8, 3, torch.float32)
    x.requires_grad_()
    with pytest.raises(
        RuntimeError, match=r"argument 'out': .* not differentiable, but an input requires grad"
    ):
        lrbench.linear_recurrence(a, x, h0, out=torch.empty(8, 3))
    with torch.no_grad():
        out = lrbench.linear_recurrence(a, x, h0, out=torch.empty(8, 3))
    assert_close(
        "out under no_grad", out, run("reference", a, x.detach(), h0), **TOL[torch.float32]
    )


def test_numpy_out_of_any_layout_and_overlap_across_views():
    a, x, h0 = (t.numpy() for t in make_inputs(12, 2, torch.float64))
    want = lrbench.linear_recurrence(a, x, h0, backend="reference")
    for out in (np.empty((12, 2), dtype=">f8"), np.empty((12, 2))[::-1], np.empty((2, 12)).T):
        assert lrbench.linear_recurrence(a, x, h0, out=out) is out
        np.testing.assert_allclose(out, want, rtol=1e-12)
    frozen = np.empty((12, 2))
    frozen.setflags(write=False)
    with pytest.raises(ValueError, match=r"argument 'out' is a read-only numpy array"):
        lrbench.linear_recurrence(a, x, h0, out=frozen)
    base = np.ones(25)  # two views of one buffer: separate torch storages
    with pytest.raises(ValueError, match=r"argument 'out' overlaps argument 'x' in memory"):
        lrbench.linear_recurrence(np.full(24, 0.5), base[:24], out=base[1:])
    with pytest.raises(ValueError, match=r"argument 'out' is broadcast \(stride 0"):
        lrbench.linear_recurrence(
            torch.rand(4, 3), torch.rand(4, 3), out=torch.empty(1, 3).expand(4, 3)
        )


def test_out_refuses_autograd_with_packed_h0():
    a, x, _ = make_inputs(8, 3, torch.float32)
    h0 = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"argument 'out': .* not differentiable"):
        lrbench.linear_recurrence(
            a, x, h0, cu_seqlens=torch.tensor([0, 3, 8]), out=torch.empty(8, 3)
        )


def test_out_under_torch_compile():
    a, x, h0 = make_inputs(9, 3, torch.float32)
    out = torch.empty(9, 3)
    fn = torch.compile(
        lambda a, x, h0, out: lrbench.linear_recurrence(a, x, h0, backend="cpu-serial", out=out),
        fullgraph=True,
    )
    fn(a, x, h0, out)
    assert_close("compiled out=", out, run("reference", a, x, h0), **TOL[torch.float32])


@pytest.mark.parametrize("which", ["x", "a", "partial"])
def test_out_overlapping_an_input_is_refused_by_the_operator_and_under_compile(which):
    """Defect: the public operator (eager) and a compiled call wrote h over its own inputs and
    returned garbage (errors of 1e20); the check now runs inside the operator, where the kernel runs."""
    a, x, _ = make_inputs(64, 3, torch.float32)
    buf = torch.cat([x, x[:1]]).clone()
    args = {
        "x": (a, x.clone(), None),
        "a": (x, a.clone(), None),
        "partial": (a, buf[:-1], buf[1:]),
    }[which]
    aa, xx, out = args
    out = xx if which == "x" else aa if which == "a" else out
    name = "a" if which == "a" else "x"
    with pytest.raises(ValueError, match=rf"argument 'out' overlaps argument '{name}'"):
        torch.ops.lrbench.scan_out(aa, xx, None, False, "auto", out=out)
    fn = torch.compile(
        lambda a, x, o: lrbench.linear_recurrence(a, x, out=o), fullgraph=True, dynamic=True
    )
    with pytest.raises(Exception, match=rf"argument 'out' overlaps argument '{name}'"):
        fn(aa, xx, out)


@pytest.mark.parametrize("backend", ["reference"] + CPU_BACKENDS)
def test_inputs_with_the_negative_bit_set(backend):
    """Defect: a contiguous tensor whose negative bit is set (a lazy negation, as torch makes for
    the imaginary part of a conjugate) crashed the NumPy kernels inside torch."""
    a, x, h0 = make_inputs(33, 3, torch.float64)
    na, nx, nh0 = (torch._neg_view(-t) for t in (a, x, h0))
    assert na.is_neg() and na.is_contiguous()
    assert_close(
        "negative bit", run(backend, na, nx, nh0), run("reference", a, x, h0), **TOL[torch.float64]
    )


def test_missing_a_or_x_is_named():
    x = torch.ones(4, 2)
    for args, name in (((None, x), "a"), ((x, None), "x")):
        with pytest.raises(
            TypeError, match=rf"argument '{name}' must be a torch.Tensor .* got None"
        ):
            lrbench.linear_recurrence(*args)
