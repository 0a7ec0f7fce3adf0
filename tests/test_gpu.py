"""The CUDA and Triton backends on a real GPU, against the float64 reference (run on the CPU).

Marked ``gpu``; skipped where torch sees no CUDA device. Run there with ``pytest -m gpu``.
"""

from __future__ import annotations

import gc

import pytest
import torch

import lrbench
from conftest import GPU_BACKENDS, assert_close, make_inputs, run, TOL
from emulation import cases as kc

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TS = [1, 2, 31, 33, 1000, 1023, 1025, 4097, 65537]
NS = [1, 3, 4, 32, 257, 1024]


def _module(backend):
    return lrbench.registry.get(backend).load()


def _cases():
    for backend in GPU_BACKENDS:
        for dt, dtype in DTYPES.items():
            if dtype not in _dtypes(backend):
                continue
            for T in TS:
                for N in NS:
                    if T * N > 1 << 22 and dt != "fp32":
                        continue
                    h0, rev = (T + N) % 2 == 0, (T // 2 + N) % 2 == 1
                    yield pytest.param(
                        backend,
                        T,
                        N,
                        dt,
                        h0,
                        rev,
                        id=f"{backend}-T{T}-N{N}-{dt}-h0{int(h0)}-rev{int(rev)}",
                    )
        for T, N in [(1 << 20, 1), (1 << 20, 32), ((1 << 18) + 1, 5)]:
            yield pytest.param(
                backend, T, N, "fp32", True, False, id=f"{backend}-T{T}-N{N}-fp32-long"
            )


def _dtypes(backend):
    try:
        return _module(backend).DTYPES
    except RuntimeError:
        return DTYPES.values()  # reported by the test as unavailable


def _leaf(t, dtype, device):
    return None if t is None else t.detach().to(device=device, dtype=dtype).clone().requires_grad_()


def free_gpu_bytes() -> int:
    """Free device memory once torch's cache is emptied: after earlier tests the caching
    allocator holds blocks that mem_get_info counts as used."""
    gc.collect()
    torch.cuda.empty_cache()
    return torch.cuda.mem_get_info()[0]


@pytest.mark.parametrize("case", kc.cases(), ids=lambda c: c.id)
def test_emulation_case_on_gpu(case, poisoned):
    """The CPU emulation's cases (tests/test_emulation.py), on the real device."""
    kc.check(case, device="cuda")


@pytest.mark.parametrize("backend,T,N,dt,use_h0,reverse", list(_cases()))
def test_forward_backward_vs_reference(backend, T, N, dt, use_h0, reverse, poisoned):
    _module(backend)  # an unavailable backend fails here, with its reason
    dtype = DTYPES[dt]
    gates = "long" if T > 4096 else "sigmoid"
    a, x, h0 = make_inputs(T, N, dtype, gates, seed=T + 3 * N, h0=use_h0)
    a64, x64, h064 = (_leaf(t, torch.float64, "cpu") for t in (a, x, h0))
    ref = run("reference", a64, x64, h064, reverse=reverse)
    gh = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    gh = gh.to(dtype).double()  # the same rounded gradient on both sides
    (ref * gh).sum().backward()
    a_, x_, h0_ = (_leaf(t, dtype, "cuda") for t in (a, x, h0))
    h = run(backend, a_, x_, h0_, reverse=reverse)
    (h * gh.to("cuda", dtype)).sum().backward()
    tol = TOL[dtype]
    assert_close("h", h.cpu(), ref, **tol)
    assert_close("dx", x_.grad.cpu(), x64.grad, **tol)
    assert_close("da", a_.grad.cpu(), a64.grad, **tol)
    if use_h0:
        assert_close("dh0", h0_.grad.cpu(), h064.grad, **tol)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_bitwise_deterministic(backend):
    a, x, h0 = (t.cuda() for t in make_inputs((1 << 18) + 7, 4, torch.float32, "long", seed=9))
    outs = []
    for _ in range(3):
        a_, x_, h0_ = (t.clone().requires_grad_() for t in (a, x, h0))
        h = run(backend, a_, x_, h0_)
        h.sum().backward()
        outs.append((h.detach(), a_.grad, x_.grad, h0_.grad))
    for other in outs[1:]:
        for u, v in zip(outs[0], other):
            assert torch.equal(u, v)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_non_default_stream(backend):
    a, x, h0 = make_inputs(70001, 33, torch.float32, "long", seed=4)
    ref = run("reference", a.double(), x.double(), h0.double())
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        big = torch.randn(4096, 4096, device="cuda")
        for _ in range(20):
            big = big @ big / 64  # keep the side stream busy first
        a_, x_, h0_ = a.cuda(), x.cuda(), h0.cuda()
        h = run(backend, a_, x_, h0_)
        h_cpu = h.to("cpu", non_blocking=False)
    side.synchronize()
    assert_close("h", h_cpu, ref, **TOL[torch.float32])


@pytest.mark.parametrize("backend", ["cuda-serial", "cuda-scan", "cuda-paper"])
def test_more_than_2_31_elements(backend):
    """T*N > 2^31: a = 1, x[t, n] = n % 7 + 1, so h[t, n] = (t + 1)(n % 7 + 1), exact in fp32."""
    T, N = 1 << 16, (1 << 15) + 3
    free = free_gpu_bytes()
    if free < 6 * T * N * 4 + (1 << 30):
        pytest.skip(f"needs {6 * T * N * 4 / 2**30:.0f} GiB of GPU memory, {free / 2**30:.0f} free")
    col = (torch.arange(N, device="cuda") % 7 + 1).float()
    a = torch.ones(T, N, device="cuda", requires_grad=True)
    x = col.expand(T, N).contiguous().requires_grad_()
    h = run(backend, a, x, None)
    t = torch.arange(T, device="cuda", dtype=torch.float32)[:, None]
    assert torch.equal(h[-1], T * col) and torch.equal(h[:, -1], (t[:, 0] + 1) * col[-1])
    assert torch.equal(h[T // 2 + 1], (T // 2 + 2) * col)
    h.backward(torch.ones_like(h))
    g = (T - t).expand(T, N)  # g[t] = T - t with every gate 1
    assert torch.equal(x.grad[:, -1], g[:, -1]) and torch.equal(x.grad[-1], g[-1])
    del h, g
    torch.testing.assert_close(
        a.grad[1:, -1], (T - t[1:, 0]) * t[1:, 0] * col[-1], rtol=1e-6, atol=0
    )


def test_auto_picks_cuda_scan():
    assert lrbench.auto_backend(1 << 16, 128, torch.float32, torch.device("cuda")) == "cuda-scan"
