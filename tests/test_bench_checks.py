"""The checks the kernel ladder and the peer benchmarks run before timing: every variant and every
installed peer agrees with the float64 loop, and a wrong one is caught by name."""

from __future__ import annotations

import pytest
import torch

from benchmarks import bench_kernels, bench_peers
from benchmarks.common import inputs


@pytest.fixture
def small(monkeypatch):
    """2^16 elements in tiles of 64 KiB an operand: four tiles, each long enough to be cut into
    chunks (``chunked.MIN_CHUNK_BYTES``); returns what each parallel step scanned."""
    monkeypatch.setattr(bench_kernels, "ELEMENTS", 1 << 16)
    monkeypatch.setattr(bench_kernels.chunked, "TILE_BYTES", 64 << 10)
    scanned = []
    for name in ("_chains", "_pipeline"):
        step = getattr(bench_kernels.chunked, name)

        def counted(*args, step=step, **kw):
            done = step(*args, **kw)
            scanned.append(done)
            return done

        monkeypatch.setattr(bench_kernels.chunked, name, counted)
    return scanned


LADDER = [
    (v, N, d)
    for v in bench_kernels.VARIANTS
    for N in bench_kernels.LADDER_N
    for d in ("forward", "reverse")
    if bench_kernels.applies(v, N, d) is None
]


@pytest.mark.parametrize("variant,N,direction", LADDER)
def test_each_ladder_variant_computes_the_scan(small, variant, N, direction):
    call, h = bench_kernels.ladder_call(variant, N, direction)
    bench_kernels.check(variant, call, h, N, direction)
    assert torch.isfinite(h).all()
    if variant in ("three-pass", "pipeline") and torch.get_num_threads() > 1:
        assert small and all(done > 0 for done in small), small  # chunks, not a serial fallback


@pytest.mark.parametrize("head", bench_kernels.PipelineHead.params[1])
def test_pipeline_computes_the_scan_at_every_head(small, head):
    call, h = bench_kernels.ladder_call("pipeline", 16, head=head)
    bench_kernels.check("pipeline", call, h, 16, "forward")
    if torch.get_num_threads() > 1:
        assert small and all(done > 0 for done in small), small


def test_ladder_check_catches_a_wrong_variant(small):
    call, h = bench_kernels.ladder_call("rows", 4, "forward")

    def off_by_one_step():
        call()
        h[1:] = h[:-1].clone()

    with pytest.raises(AssertionError, match="rows at N = 4, forward: max abs error"):
        bench_kernels.check("rows", off_by_one_step, h, 4, "forward")


def test_ladder_names_what_does_not_apply():
    with pytest.raises(NotImplementedError, match="chains at N = 16"):
        bench_kernels.ladder_call("chains", 16)
    with pytest.raises(NotImplementedError, match="pipeline at N = 4"):
        bench_kernels.ladder_call("pipeline", 4)


@pytest.mark.parametrize("subject", ["auto", "cpu-serial", "cpu-chunked"])
def test_peer_check_passes_lrbench(subject):
    a, x = inputs(1500, 70, "float32", "cpu")
    bench_peers.check(subject, a, x)


@pytest.mark.parametrize("T,N", [(300, 5), (64, 64)])  # square: the shapes agree, the values not
def test_peer_check_catches_a_peer_in_the_wrong_layout(monkeypatch, T, N):
    a, x = inputs(T, N, "float32", "cpu")
    right = bench_peers._call

    def transposed(subject, a, x):  # an (N, T) peer whose output is read back untransposed
        call, _ = right(subject, a, x)
        return (lambda: call().T.contiguous()), (lambda h: h)

    monkeypatch.setattr(bench_peers, "_call", transposed)
    with pytest.raises(AssertionError, match="cpu-serial: output .* differs from the float64"):
        bench_peers.check("cpu-serial", a, x)


def test_peer_check_catches_a_peer_computing_another_recurrence(monkeypatch):
    a, x = inputs(300, 5, "float32", "cpu")
    right = bench_peers._call

    def no_gate(subject, a, x):  # h[t] = h[t-1] + x[t]: a cumulative sum
        return right(subject, torch.ones_like(a), x)

    monkeypatch.setattr(bench_peers, "_call", no_gate)
    with pytest.raises(AssertionError, match="differs from the float64 loop"):
        bench_peers.check("cpu-serial", a, x)


def test_installed_peers_compute_the_scan():
    a, x = inputs(1100, 3, "float32", "cpu")
    ran = 0
    for peer in bench_peers.PEERS:
        if peer == "torch-compiled-assoc" or not bench_peers._installed(peer):
            continue
        bench_peers.check(peer, a, x)
        ran += 1
    if not ran:
        pytest.skip("no peer is installed here (make peers)")
