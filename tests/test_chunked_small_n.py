"""cpu-serial and cpu-chunked with few channels (the chain kernels, 8 chains per core in registers)
against the float64 reference: every N in 1..17 on awkward T, reverse, h0, forward and backward;
gate products that underflow are flushed, not left subnormal."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from conftest import assert_close, assert_matches_reference, make_inputs, run, tolerance
from lrbench.scan.cpu import chains as _numba_chains
from lrbench.scan.cpu import threads as _threads
from lrbench.scan.cpu import chunked as cpu_chunked

TS = [1, 2, 31, 33, 1000, 1023, 1025]


def _cases():
    for N in range(1, 18):
        for i, rev in enumerate((False, True)):
            T = TS[(N + i) % len(TS)]
            dt = torch.float32 if (N + i) % 2 else torch.float64
            yield pytest.param(
                N,
                T,
                dt,
                bool((N // 2 + i) % 2),
                rev,
                id=f"N{N}-T{T}-{str(dt)[6:]}-h0{(N // 2 + i) % 2}-rev{int(rev)}",
            )


@pytest.mark.parametrize("backend", ["cpu-serial", "cpu-chunked"])
@pytest.mark.parametrize("N,T,dtype,use_h0,reverse", list(_cases()))
def test_few_channels_vs_reference(backend, N, T, dtype, use_h0, reverse, small_chunks, poisoned):
    a, x, h0 = make_inputs(
        T, N, dtype, "long" if N % 3 == 0 else "sigmoid", seed=N * 31 + T, h0=use_h0
    )
    assert_matches_reference(backend, a, x, h0, reverse, dtype, seed=N)


@pytest.mark.parametrize("N", [1, 2, 5, 8, 15, 16, 24, 256])
def test_chunked_splits_into_whole_groups_of_chains_or_a_pipeline(N):
    """Chains: every core gets whole groups of W chains, none left idle. Pipeline (N a multiple of
    W, or CHAINS_BELOW and more): chunk 0 and one chunk per core cover the tile."""
    n = 1 << 20
    if not cpu_chunked.pipelined(N):
        C, L = cpu_chunked.plan(n, N, 4)
        assert C and L and N < cpu_chunked.CHAINS_BELOW
        assert (C * N) % (_numba_chains.W * _threads.cores()) == 0
    else:
        assert N % _numba_chains.W == 0 or N >= cpu_chunked.CHAINS_BELOW
        L0, L = cpu_chunked.pipeline_plan(n, N, 4)
        assert L0 + _threads.cores() * L == n
        assert abs(L0 - cpu_chunked.HEAD * L) <= _threads.cores() + 64


@pytest.mark.parametrize("cores", [3, 4])
@pytest.mark.parametrize("N", [8, 16, 32])
def test_pipeline_links_past_the_first(N, cores, small_chunks, monkeypatch):
    """Every link of the pipeline, not only the one a 2-core machine has: core i >= 2 takes its
    carry from core i-1 while that core scans on from it. (Here the helpers may run the links one
    after another; the carry handed on must not move.)"""
    monkeypatch.setattr(_threads, "cores", lambda: cores)
    a, x, h0 = make_inputs(3000, N, torch.float64, "long", seed=N, h0=True)
    for reverse in (False, True):
        assert_matches_reference("cpu-chunked", a, x, h0, reverse, torch.float64, seed=N)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
def test_gate_products_that_underflow_are_flushed_to_zero(dtype):
    """0.75 ** 5000 underflows; left subnormal it sticks at the smallest subnormal (0.75 rounds it
    back) and every later multiply is a microcode assist. The carry loses nothing visible."""
    N, L, Q = 3, 5000, 6
    a = np.full(Q // N * L * N, 0.75, dtype)
    x = np.ones_like(a)
    P, R = np.empty(Q, dtype), np.empty(Q, dtype)
    _numba_chains.reduce(a, 0, x, 0, N, N, L, Q, P, R, np.finfo(dtype).tiny, 0, (Q + 7) // 8)
    assert (P == 0).all(), P
    np.testing.assert_allclose(R, 4.0, rtol=1e-6)  # 1 / (1 - 0.75)


def test_long_chunks_with_underflowing_products_match_the_reference():
    """Default chunking (chunks of thousands of steps, so P underflows) against the reference."""
    a, x, h0 = make_inputs(1 << 15, 2, torch.float32, seed=3)
    for reverse in (False, True):
        ref = run("reference", a.double(), x.double(), h0.double(), reverse=reverse)
        h = run("cpu-chunked", a, x, h0, reverse=reverse)
        assert_close("h", h, ref, **tolerance("cpu-chunked", torch.float32))


def test_carry_relay_protocol():
    """CarryRelay: take waits for its slot; put stores a copy (the putter scans on from its own
    array); None (a failed or doubtful carry) reaches the next core as None."""
    relay = cpu_chunked.CarryRelay(3)
    c = np.ones(4)
    got = []
    t = threading.Thread(target=lambda: got.append(relay.take(0)))
    t.start()
    time.sleep(0.01)
    assert got == []  # waiting for slot 0
    relay.put(0, c)
    c += 1  # the putter moves on: the relayed carry does not
    t.join(5)
    np.testing.assert_array_equal(got[0], np.ones(4))
    relay.put(1, None)
    assert relay.take(1) is None


def test_a_failing_link_hands_on_no_carry_and_the_rest_is_still_exact(monkeypatch, small_chunks):
    """A link that raises puts None (the next link must not wait forever nor use a wrong carry)."""
    calls = []
    real = cpu_chunked._reduce

    def flaky(o, *args):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected")
        return real(o, *args)

    monkeypatch.setattr(cpu_chunked, "_reduce", flaky)
    monkeypatch.setattr(_threads, "cores", lambda: 3)
    a, x, h0 = make_inputs(20000, 8, torch.float64)
    with pytest.raises(RuntimeError, match="injected"):
        run("cpu-chunked", a, x, h0)
