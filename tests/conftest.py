"""Shared test data, the tolerance table and NaN poisoning."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

# auto's facts (measured on a machine without a table) go to a folder of this run, not to ~/.cache
os.environ.setdefault("LRBENCH_CACHE", tempfile.mkdtemp(prefix="lrbench-cache-"))
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # triton-scan then runs on CPU tensors

import lrbench
from lrbench.scan.cpu import chunked as cpu_chunked

# One tolerance table per dtype: max|out - ref| <= atol + rtol * max|ref| (normwise), against the
# float64 reference. log-space pays for exp/log round trips and gets its own row.
TOL = {
    torch.float64: dict(rtol=1e-12, atol=1e-12),
    torch.float32: dict(rtol=2e-5, atol=1e-6),
    torch.float16: dict(rtol=5e-3, atol=1e-3),  # fp32 accumulation; one rounding per output
    torch.bfloat16: dict(rtol=2e-2, atol=1e-2),
}
TOL_LOG_SPACE = {
    torch.float64: dict(rtol=1e-9, atol=1e-9),
    torch.float32: dict(rtol=2e-3, atol=1e-4),
}

CPU_BACKENDS = ["torch-loop", "cpu-serial", "cpu-chunked", "torch-assoc", "log-space"]
GPU_BACKENDS = ["cuda-serial", "cuda-paper", "cuda-scan", "triton-scan"]


def tolerance(backend: str, dtype: torch.dtype) -> dict:
    return (TOL_LOG_SPACE if backend == "log-space" else TOL)[dtype]


def assert_close(name: str, out: torch.Tensor, ref: torch.Tensor, rtol: float, atol: float):
    out64, ref64 = out.detach().double(), ref.detach().double()
    assert out64.shape == ref64.shape, f"{name}: shape {tuple(out64.shape)} != {tuple(ref64.shape)}"
    assert torch.equal(torch.isnan(out64), torch.isnan(ref64)), f"{name}: NaN pattern differs"
    finite = torch.isfinite(ref64)
    assert torch.equal(
        out64[~finite & ~torch.isnan(ref64)], ref64[~finite & ~torch.isnan(ref64)]
    ), f"{name}: Inf entries differ"
    if finite.any():
        err = (out64[finite] - ref64[finite]).abs().max().item()
        scale = ref64[finite].abs().max().item()
        print(f"{name}: max abs err {err:.3g} (scale {scale:.3g})")
        assert err <= atol + rtol * scale, (
            f"{name}: max abs err {err:.3g} > {atol} + {rtol} * {scale:.3g}"
        )


def make_inputs(T, N, dtype, gates="sigmoid", seed=0, h0=True, extra=()):
    """Seeded (a, x, h0) of shape (T, *extra, N) in float64, then cast to ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    shape = (T, *extra, N)
    if gates == "sigmoid":
        a = torch.sigmoid(torch.randn(shape, generator=g, dtype=torch.float64))
    elif gates == "long":
        a = 0.999 + 0.001 * torch.rand(shape, generator=g, dtype=torch.float64)
    else:
        raise ValueError(gates)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    hz = torch.randn(shape[1:], generator=g, dtype=torch.float64) if h0 else None
    cast = lambda t: None if t is None else t.to(dtype)
    return cast(a), cast(x), cast(hz)


@pytest.fixture
def small_chunks(monkeypatch):
    """Make cpu-chunked split, tile and leave a serial tail even on short test sequences."""
    monkeypatch.setattr(cpu_chunked, "MIN_CHUNK_BYTES", 4)
    monkeypatch.setattr(cpu_chunked, "TILE_BYTES", 4096)


@pytest.fixture
def poisoned(monkeypatch):
    """Every output a backend allocates starts as NaN, so unwritten elements fail the test."""
    real = torch.empty_like

    def empty_like(t, *args, **kw):
        out = real(t, *args, **kw)
        if out.is_floating_point():
            out.fill_(float("nan"))
        return out

    monkeypatch.setattr(torch, "empty_like", empty_like)
    from lrbench import memory  # the outputs of linear_recurrence

    real_empty = memory.empty

    def empty(*args, **kw):
        out = real_empty(*args, **kw)
        if out.is_floating_point() or out.is_complex():
            out.fill_(float("nan"))
        return out

    monkeypatch.setattr(memory, "empty", empty)


def run(backend, a, x, h0, **kw):
    return lrbench.linear_recurrence(a, x, h0, backend=backend, **kw)


def assert_matches_reference(backend, a, x, h0, reverse, dtype, seed):
    """h, dx, da and dh0 of ``backend`` against the float64 reference, to ``dtype``'s tolerance."""
    leaf = lambda t, dt: None if t is None else t.detach().to(dt).clone().requires_grad_()
    a64, x64, h064 = leaf(a, torch.float64), leaf(x, torch.float64), leaf(h0, torch.float64)
    ref = run("reference", a64, x64, h064, reverse=reverse)
    gh = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
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
