"""linear_recurrence: input checks, shapes, layouts, NaN/Inf, NumPy, the registry and auto."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lrbench
from conftest import CPU_BACKENDS, assert_close, make_inputs, run, TOL

BAD_INPUTS = [
    # (a, x, h0, kwargs, error, message fragment)
    (
        torch.rand(5, 3),
        torch.rand(5, 4),
        None,
        {},
        ValueError,
        r"'a' and 'x' must have the same shape; got a \(5, 3\) and x \(5, 4\)",
    ),
    (
        torch.rand(5, 3),
        torch.rand(5, 3),
        torch.rand(4),
        {},
        ValueError,
        r"'h0' must have the shape of 'a' without the time axis dim=0, \(3,\); got \(4,\)",
    ),
    (torch.rand(5, 3), torch.rand(5, 3), torch.rand(5), {"dim": 1}, None, None),
    (
        torch.rand(5, 3),
        torch.rand(5, 3),
        torch.rand(3),
        {"dim": 1},
        ValueError,
        r"dim=1, \(5,\); got \(3,\)",
    ),
    (
        torch.ones(5, 3, dtype=torch.int64),
        torch.ones(5, 3, dtype=torch.int64),
        None,
        {},
        TypeError,
        r"'a' must be a floating-point or complex tensor; got shape \(5, 3\), dtype torch.int64",
    ),
    (
        torch.rand(5, 3),
        torch.rand(5, 3, dtype=torch.float64),
        None,
        {},
        TypeError,
        r"'a' and 'x' must have the same dtype; got a torch.float32 and x torch.float64",
    ),
    (
        torch.rand(5, 3),
        torch.rand(5, 3),
        torch.rand(3, dtype=torch.float64),
        {},
        TypeError,
        r"'a' and 'h0' must have the same dtype",
    ),
    (
        torch.rand(5, 3),
        torch.rand(5, 3, device="meta"),
        None,
        {},
        ValueError,
        r"same device; got a on cpu and x on meta",
    ),
    (
        torch.rand(5, 3),
        torch.rand(5, 3),
        None,
        {"dim": 2},
        ValueError,
        r"'dim'=2 is out of range for a and x of shape \(5, 3\)",
    ),
    (torch.tensor(0.5), torch.tensor(1.0), None, {}, ValueError, r"'a' must have a time axis"),
    (
        torch.rand(5, 3),
        [[1.0]],
        None,
        {},
        TypeError,
        r"argument 'x' must be a torch.Tensor or numpy.ndarray, got list",
    ),
    (
        torch.rand(5, 3),
        np.ones((5, 3)),
        None,
        {},
        TypeError,
        r"both be torch tensors or both numpy arrays; got a Tensor and x ndarray",
    ),
    (
        torch.rand(5, 3),
        torch.rand(5, 3),
        None,
        {"backend": "nope"},
        ValueError,
        r"unknown backend 'nope'",
    ),
    (
        torch.rand(5, 3, dtype=torch.float16),
        torch.rand(5, 3, dtype=torch.float16),
        None,
        {"backend": "cpu-serial"},
        TypeError,
        r"backend 'cpu-serial' cannot take dtype torch.float16",
    ),
    (
        torch.rand(5, 3, device="meta"),
        torch.rand(5, 3, device="meta"),
        None,
        {"backend": "cpu-chunked"},
        ValueError,
        r"backend 'cpu-chunked' cannot run on device meta",
    ),
    (
        torch.rand(5, 3) - 0.5,
        torch.rand(5, 3),
        None,
        {"backend": "log-space"},
        ValueError,
        r"'log-space' needs every gate a > 0; argument 'a' has \d+ of 15 entries <= 0",
    ),
]


@pytest.mark.parametrize(
    "a,x,h0,kw,err,msg", BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))]
)
def test_bad_input_names_the_argument(a, x, h0, kw, err, msg):
    if err is None:
        assert lrbench.linear_recurrence(a, x, h0, **kw).shape == a.shape
        return
    with pytest.raises(err, match=msg):
        lrbench.linear_recurrence(a, x, h0, **kw)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_empty_sequence(backend):
    a, x = torch.rand(0, 4, 3, requires_grad=True), torch.rand(0, 4, 3)
    h = run(backend, a, x, torch.rand(4, 3))
    assert h.shape == (0, 4, 3)
    h.sum().backward()
    assert a.grad.shape == (0, 4, 3)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_dim_and_noncontiguous_views(backend, dim, small_chunks):
    a, x, _ = make_inputs(40, 6, torch.float64, extra=(5,))  # (40, 5, 6)
    a, x = a.transpose(0, 2)[::2], x.transpose(0, 2)[::2]  # (3, 5, 40), strided views
    assert not a.is_contiguous()
    h0 = torch.randn(tuple(s for i, s in enumerate(a.shape) if i != dim % 3), dtype=torch.float64)
    ref = run("reference", a, x, h0, dim=dim)
    moved = lambda t: t.movedim(dim, 0).reshape(a.shape[dim], -1)
    by_hand = run("reference", moved(a).contiguous(), moved(x).contiguous(), h0.reshape(-1))
    assert_close("reference vs by hand", moved(ref), by_hand, rtol=0, atol=0)
    assert_close("h", run(backend, a, x, h0, dim=dim), ref, **TOL[torch.float64])


@pytest.mark.parametrize(
    "backend,inf",
    [("torch-loop", True), ("cpu-serial", True), ("cpu-chunked", True), ("torch-assoc", False)],
)
@pytest.mark.parametrize("reverse", [False, True])
def test_nan_and_inf_propagate_like_the_reference(backend, inf, reverse, small_chunks):
    """torch-assoc's tree turns a later Inf into NaN (inf * 0 inside torch); it is held to NaN only."""
    a, x, h0 = make_inputs(300, 3, torch.float32)
    x[100, 0] = float("nan")
    x[50, 1] = float("inf") if inf else 1.0
    a[200, 2] = float("nan")
    ref = run("reference", a, x, h0, reverse=reverse)
    assert torch.isnan(ref).any() and torch.isinf(ref).any() == inf
    assert_close("h", run(backend, a, x, h0, reverse=reverse), ref, **TOL[torch.float32])


def test_log_space_propagates_nan_inputs():
    a, x, h0 = make_inputs(50, 2, torch.float64)
    x[10, 0] = float("nan")
    assert_close("h", run("log-space", a, x, h0), run("reference", a, x, h0), rtol=1e-9, atol=1e-9)


def test_numpy_in_numpy_out():
    a, x, h0 = (t.numpy() for t in make_inputs(33, 4, torch.float64))
    h = lrbench.linear_recurrence(a, x, h0, backend="cpu-serial")
    assert isinstance(h, np.ndarray) and h.dtype == np.float64 and h.shape == (33, 4)
    np.testing.assert_allclose(
        h, lrbench.linear_recurrence(a, x, h0, backend="reference"), rtol=1e-12
    )


def test_backends_lists_every_backend_with_availability():
    rows = {r["name"]: r for r in lrbench.backends()}
    assert set(CPU_BACKENDS) | {"reference"} <= set(rows)
    for r in rows.values():
        assert isinstance(r["available"], bool) and (r["available"] or r["reason"])


def test_unavailable_backend_says_why(monkeypatch):
    lrbench.register("broken", "lrbench.no_such_module", "test only")
    try:
        row = next(r for r in lrbench.backends() if r["name"] == "broken")
        assert not row["available"] and "no_such_module" in row["reason"]
        with pytest.raises(RuntimeError, match="backend 'broken' is unavailable"):
            lrbench.linear_recurrence(torch.rand(3, 2), torch.rand(3, 2), backend="broken")
    finally:
        from lrbench import registry

        registry._REGISTRY.pop("broken")


@pytest.mark.parametrize(
    "T,N,dtype,device,want",
    [
        (1 << 20, 1, torch.bfloat16, "cpu", "torch-loop"),
        (1 << 20, 1, torch.float32, "meta", "torch-loop"),
        (100, 1, torch.float64, "cpu", "cpu-serial"),
    ],
)
def test_auto_rule(T, N, dtype, device, want):
    assert lrbench.auto_backend(T, N, dtype, torch.device(device)) == want


def test_auto_follows_the_measured_table():
    """The CPU choice is lrbench/auto_cpu.json's (its logic: tests/test_auto_rule.py)."""
    from lrbench import auto_rule

    for N in (1, 2, 4, 16, 256, 4096):
        for T in (1 << 10, 1 << 16, 1 << 20):
            want = "cpu-chunked" if auto_rule.chunked_wins(T, N) else "cpu-serial"
            assert lrbench.auto_backend(T, N, torch.float32, torch.device("cpu")) == want
