"""Hypothesis: random shapes, axes, directions and gates against the reference."""
from __future__ import annotations

import torch
from hypothesis import given, settings, strategies as st

from conftest import assert_close, run, TOL
from lrbench.scan import cpu_chunked


@st.composite
def problems(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 70), min_size=ndim, max_size=ndim)))
    dim = draw(st.integers(-ndim, ndim - 1))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    lo = draw(st.sampled_from([0.0, 0.5, 0.99]))
    a = lo + (1 - lo) * torch.rand(shape, generator=g, dtype=torch.float64)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    rest = tuple(s for i, s in enumerate(shape) if i != dim % ndim)
    h0 = torch.randn(rest, generator=g, dtype=torch.float64) if draw(st.booleans()) else None
    return a, x, h0, dim, draw(st.booleans())


@settings(max_examples=60, deadline=None)
@given(p=problems(), backend=st.sampled_from(["auto", "cpu-serial", "cpu-chunked", "torch-assoc"]),
       split=st.booleans())
def test_matches_reference(p, backend, split):
    a, x, h0, dim, reverse = p
    old = cpu_chunked.MIN_CHUNK_BYTES, cpu_chunked.TILE_BYTES
    if split:
        cpu_chunked.MIN_CHUNK_BYTES, cpu_chunked.TILE_BYTES = 4, 256
    try:
        got = run(backend, a, x, h0, dim=dim, reverse=reverse)
    finally:
        cpu_chunked.MIN_CHUNK_BYTES, cpu_chunked.TILE_BYTES = old
    assert_close("h", got, run("reference", a, x, h0, dim=dim, reverse=reverse), **TOL[torch.float64])
