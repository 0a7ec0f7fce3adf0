"""Hypothesis: random shapes, axes, strides, dtypes, directions, h0, out= and backends, forward and
backward, against the float64 reference."""

from __future__ import annotations

import torch
from hypothesis import given, settings, strategies as st

from conftest import assert_close, run, tolerance
from lrbench.scan.cpu import chunked as cpu_chunked

BACKENDS = ["auto", "cpu-serial", "cpu-chunked", "torch-assoc", "torch-loop", "log-space"]


def _layout(t: torch.Tensor, how: str) -> torch.Tensor:
    """The values of t in another memory layout: contiguous, every other element, or transposed."""
    if how == "strided":
        wide = torch.empty(t.shape[:-1] + (2 * t.shape[-1],), dtype=t.dtype)
        wide[..., ::2] = t
        return wide[..., ::2]
    if how == "transposed" and t.ndim >= 2:
        return t.transpose(0, -1).contiguous().transpose(0, -1)
    return t


@st.composite
def problems(draw):
    """(a, x, h0, dim, reverse, layout): a possibly of size 1 on one axis, broadcast by ``build``."""
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 70), min_size=ndim, max_size=ndim)))
    dim = draw(st.integers(-ndim, ndim - 1))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    lo = draw(st.sampled_from([0.01, 0.5, 0.99]))
    a = lo + (1 - lo) * torch.rand(shape, generator=g, dtype=torch.float64)
    if draw(st.booleans()):  # a gate broadcast over one axis
        a = a.narrow(draw(st.integers(0, ndim - 1)), 0, 1).clone()
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    rest = tuple(s for i, s in enumerate(shape) if i != dim % ndim)
    h0 = torch.randn(rest, generator=g, dtype=torch.float64) if draw(st.booleans()) else None
    layout = draw(st.sampled_from(["contiguous", "strided", "transposed"]))
    return a, x, h0, dim, draw(st.booleans()), layout


def build(a, x, layout):
    """The inputs as the call sees them (differentiably): a broadcast to x's shape (stride 0
    where it was narrowed) and x in ``layout``."""
    return a.expand(x.shape), _layout(x, layout)


@settings(max_examples=80, deadline=None)
@given(
    p=problems(),
    backend=st.sampled_from(BACKENDS),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    split=st.booleans(),
    use_out=st.booleans(),
)
def test_forward_and_backward_match_reference(p, backend, dtype, split, use_out):
    a64, x64, h064, dim, reverse, layout = p
    tol = tolerance("log-space" if backend == "log-space" else "reference", dtype)
    old = cpu_chunked.MIN_CHUNK_BYTES, cpu_chunked.TILE_BYTES
    if split:  # chunks, tiles and a serial tail
        cpu_chunked.MIN_CHUNK_BYTES, cpu_chunked.TILE_BYTES = 4, 256
    leaves = [t.to(dtype).requires_grad_() if t is not None else None for t in (a64, x64, h064)]
    refs = [
        t.detach().clone().requires_grad_() if t is not None else None for t in (a64, x64, h064)
    ]
    try:
        want = run(
            "reference", *build(refs[0], refs[1], "contiguous"), refs[2], dim=dim, reverse=reverse
        )
        if use_out:
            with torch.no_grad():
                out = torch.empty(x64.shape, dtype=dtype)
                assert (
                    run(
                        backend,
                        *build(leaves[0], leaves[1], layout),
                        leaves[2],
                        dim=dim,
                        reverse=reverse,
                        out=out,
                    )
                    is out
                )
            assert_close("out", out, want, **tol)
        h = run(backend, *build(leaves[0], leaves[1], layout), leaves[2], dim=dim, reverse=reverse)
        assert_close("h", h, want, **tol)
        gh = torch.randn(h.shape, dtype=torch.float64)
        got = torch.autograd.grad((h * gh.to(dtype)).sum(), [t for t in leaves if t is not None])
    finally:
        cpu_chunked.MIN_CHUNK_BYTES, cpu_chunked.TILE_BYTES = old
    ref_grads = torch.autograd.grad((want * gh).sum(), [t for t in refs if t is not None])
    for name, g, w in zip(("da", "dx", "dh0"), got, ref_grads):
        scale = tol["rtol"] * max(1.0, a64.shape[dim % a64.ndim] ** 0.5)  # gradients sum over T
        sums = max(1, x64.numel() // max(1, w.numel()))  # and over a broadcast gate's rows
        assert_close(name, g, w, rtol=scale * sums**0.5, atol=tol["atol"] * 10 * sums**0.5)
