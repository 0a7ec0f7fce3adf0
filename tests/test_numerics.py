"""Numerics: every backend gives the serial loop's finite answer where it is finite; log-space's long
sequences; strided, broadcast and foreign-byte-order inputs read as they are."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import lrbench
from conftest import CPU_BACKENDS, assert_close, make_inputs, run, TOL

BACKENDS = CPU_BACKENDS + ["triton-scan"]


def _cases(dtype):
    """(name, a, x): inputs whose serial answer is finite where a parallel combine can make inf * 0."""
    T, big = 300, (1e6 if dtype == torch.float64 else 1e3)
    a, x = torch.full((T, 2), big, dtype=dtype), torch.zeros(T, 2, dtype=dtype)
    a[-3:], x[-3:] = 0.5, 1.0  # products overflow over a zero state, then data
    yield "overflow over a zero state", a, x
    a, x = torch.rand(T, 2, dtype=dtype), torch.randn(T, 2, dtype=dtype)
    a[150, 0], a[100, 1] = float("inf"), -float("inf")
    yield "a = +-inf", a, x
    a, x = torch.rand(T, 2, dtype=dtype), torch.randn(T, 2, dtype=dtype)
    a[:120, 0] = float("inf")
    x[:120, 0] = 0  # inf * 0 in the serial loop too: NaN from there on
    yield "a = +inf over a zero state", a, x
    a, x = torch.rand(T, 2, dtype=dtype), torch.zeros(T, 2, dtype=dtype)
    a[0, 0], a[170, 1], x[200:] = float("nan"), float("nan"), 1.0
    yield "NaN gate over a zero state", a, x  # NaN * 0: NaN from there on, first gate included
    tiny = torch.finfo(dtype).tiny
    yield (
        "subnormals",
        torch.full((T, 2), 0.5, dtype=dtype),
        torch.full((T, 2), tiny / 4, dtype=dtype),
    )


def check_finite_where_serial_is(name, h, ref, dtype):
    """h equals ref wherever ref is finite (to dtype's tolerance)."""
    h, ref = h.detach().double(), ref.detach().double()
    finite = torch.isfinite(ref)
    lost = (~torch.isfinite(h) & finite).sum().item()
    assert lost == 0, f"{name}: {lost} non-finite entries where the serial loop's are finite"
    hidden = (~torch.isnan(h) & torch.isnan(ref)).sum().item()
    assert hidden == 0, f"{name}: {hidden} entries not NaN where the serial loop's are NaN"
    assert_close(name, torch.where(finite, h, 0), torch.where(finite, ref, 0), **TOL[dtype])


def _grads(backend, a, x, gh, reverse):
    a, x = a.clone().requires_grad_(), x.clone().requires_grad_()
    return torch.autograd.grad((run(backend, a, x, None, reverse=reverse) * gh).sum(), (a, x))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reverse", [False, True])
def test_finite_serial_answers_stay_finite(backend, dtype, reverse, small_chunks):
    if backend == "triton-scan" and dtype == torch.float64:
        pytest.skip("triton-scan takes fp16, bf16, fp32")
    for name, a, x in _cases(dtype):
        if reverse:
            a, x = a.flip(0), x.flip(0)
        if backend == "log-space" and not bool((a > 0).all()):
            with pytest.raises(ValueError, match="'log-space' needs every gate a > 0"):
                run(backend, a, x, None, reverse=reverse)
            continue
        ref = run("torch-loop", a, x, None, reverse=reverse)  # the serial loop
        check_finite_where_serial_is(
            f"{name}, h", run(backend, a, x, None, reverse=reverse), ref, dtype
        )
    # The backward is a scan the other way: gates that overflow over a zero gradient; x = 0 keeps
    # h = 0, so da = g * 0 must be 0, not inf * 0.
    a, gh = next(_cases(dtype))[1:]
    a, gh = a.flip(0), gh.flip(0)  # big gates late, the gradient enters early
    if reverse:
        a, gh = a.flip(0), gh.flip(0)
    x = torch.zeros_like(a)
    for what, g, g_ref in zip(
        ("da", "dx"), _grads(backend, a, x, gh, reverse), _grads("torch-loop", a, x, gh, reverse)
    ):
        assert torch.isfinite(g_ref).all() and (what == "da" or g_ref.abs().max() > 0)
        check_finite_where_serial_is(f"overflow over a zero gradient, {what}", g, g_ref, dtype)


def _naive_chunked(a, x, chunks=4):
    """Algorithm 1 with the textbook carry ``P * c + R``: the combine the check must catch."""
    T = a.shape[0]
    L = -(-T // chunks)
    h, c = torch.empty_like(x), torch.zeros_like(x[0])
    for s in range(0, T, L):
        P = torch.prod(a[s : s + L], dim=0)
        R = lrbench.linear_recurrence(a[s : s + L], x[s : s + L], backend="torch-loop")
        h[s : s + L] = lrbench.linear_recurrence(
            a[s : s + L], x[s : s + L], c, backend="torch-loop"
        )
        c = P * c + R[-1]
    return h


def test_the_check_catches_an_inf_times_zero_combine():
    name, a, x = next(_cases(torch.float32))
    ref = run("torch-loop", a, x, None)
    with pytest.raises(
        AssertionError, match="non-finite entries where the serial loop's are finite"
    ):
        check_finite_where_serial_is("naive", _naive_chunked(a, x), ref, torch.float32)


def test_log_space_float32_holds_1e_4_at_T_2_20():
    g = torch.Generator().manual_seed(0)
    T = 1 << 20
    a = torch.sigmoid(torch.randn(T, 1, generator=g, dtype=torch.float64))
    x = torch.randn(T, 1, generator=g, dtype=torch.float64).abs() + 0.1
    ref = run("cpu-serial", a, x, None)
    h = run("log-space", a.float(), x.float(), None).double()
    rel = ((h - ref).abs() / ref.abs()).max().item()
    assert rel <= 1e-4, f"log-space fp32 relative error {rel:.3g} at T = 2^20"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_broadcast_and_strided_inputs(backend, small_chunks, monkeypatch):
    """Stride-0 gates and strided inputs, read a tile at a time (tiny tiles: many carries)."""
    from lrbench import op

    monkeypatch.setattr(op, "TILE_BYTES", 64)
    T, B, N = 333, 4, 5
    g = torch.Generator().manual_seed(1)
    gate = torch.rand(1, 1, N, generator=g, dtype=torch.float64)
    for a in (
        gate.expand(T, B, N),
        torch.rand(T, 1, N, generator=g, dtype=torch.float64).expand(T, B, N),
    ):
        x = torch.randn(T, 2 * B, N, generator=g, dtype=torch.float64)[:, ::2]  # strided too
        h0 = torch.randn(N, dtype=torch.float64).expand(B, N)
        for reverse in (False, True):
            want = run(
                "reference", a.contiguous(), x.contiguous(), h0.contiguous(), reverse=reverse
            )
            assert_close("h", run(backend, a, x, h0, reverse=reverse), want, **TOL[torch.float64])


def test_broadcast_gate_is_not_materialised():
    """Peak memory of a call with a stride-0 gate: the output and tiles, not a copy of the gate
    (T * N = 2^24 fp32 here; the asv peakmem benchmark records 2^28)."""
    code = textwrap.dedent("""
        import resource, torch, lrbench
        T, N = 1 << 16, 256
        x = torch.randn(T, N)
        a = torch.full((1, N), 0.9).expand(T, N)
        lrbench.linear_recurrence(a[:64], x[:64], backend="cpu-serial")       # load and compile
        out = torch.empty(T, N); out.fill_(0); del out
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        h = lrbench.linear_recurrence(a, x, backend="cpu-serial")
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) * 1024 / (T * N * 4))
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ratio = float(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert ratio <= 1.3, f"peak memory grew by {ratio:.2f}x the output's size"


def test_numpy_any_strides_and_byte_order():
    a, x, h0 = (t.numpy() for t in make_inputs(40, 6, torch.float64, extra=(3,)))  # (40, 3, 6)
    want = lrbench.linear_recurrence(a, x, h0, backend="reference")
    big = a.astype(">f8"), x.astype(">f8"), h0.astype(">f8")
    np.testing.assert_allclose(
        lrbench.linear_recurrence(*big, backend="cpu-serial"), want, rtol=1e-12
    )
    flipped = lrbench.linear_recurrence(
        a[::-1], x[::-1], h0, backend="cpu-serial"
    )  # negative strides
    np.testing.assert_allclose(
        flipped,
        lrbench.linear_recurrence(a[::-1].copy(), x[::-1].copy(), h0, backend="reference"),
        rtol=1e-12,
    )
    gate = np.broadcast_to(a[:1], a.shape)  # read-only, stride 0
    np.testing.assert_allclose(
        lrbench.linear_recurrence(gate, x, h0, backend="cpu-chunked"),
        lrbench.linear_recurrence(gate.copy(), x, h0, backend="reference"),
        rtol=1e-12,
    )
    sliced = lrbench.linear_recurrence(a[:, :, ::2], x[:, :, ::2], h0[:, ::2], dim=0)
    np.testing.assert_allclose(sliced, want[:, :, ::2], rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("N", [8, 16])
def test_chunked_pipeline_keeps_finite_serial_answers(N, reverse, dtype, small_chunks):
    """The cases above with N channels, where cpu-chunked runs its pipeline, not its chains."""
    from lrbench.scan.cpu import chunked as cpu_chunked

    assert cpu_chunked.pipelined(N)
    for name, a, x in _cases(dtype):
        a, x = a.repeat(1, N // 2), x.repeat(1, N // 2)
        if reverse:
            a, x = a.flip(0), x.flip(0)
        ref = run("torch-loop", a, x, None, reverse=reverse)
        check_finite_where_serial_is(
            f"{name}, N = {N}", run("cpu-chunked", a, x, None, reverse=reverse), ref, dtype
        )


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("N", [1, 8, 16])
def test_chunked_overflow_under_a_nonzero_state(N, reverse, small_chunks):
    """Gates 1e10 and 1e-10 by turns: the serial state stays near 1, every chunk's gate product
    overflows or underflows (and is flushed). cpu-chunked notices and runs such tiles serially
    (N = 1: chains; 8 and 16: the pipeline). (torch-assoc, triton-scan and cuda-scan combine
    products in a tree and can return inf here.)"""
    pattern = torch.tensor([1e10] * 4 + [1e-10] * 4)
    a = pattern.repeat(40).view(320, 1).repeat(1, N)
    x = torch.zeros(320, N)
    x[0] = 1e-30
    if reverse:
        a, x = a.flip(0), x.flip(0)
    ref = run("torch-loop", a, x, None, reverse=reverse)
    assert torch.isfinite(ref).all() and ref.abs().max() > 0.5
    check_finite_where_serial_is(
        "alternating gates", run("cpu-chunked", a, x, None, reverse=reverse), ref, torch.float32
    )
