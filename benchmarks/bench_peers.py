"""The CPU scans a user would pick instead of lrbench, on the same shapes and bytes (fp32, output
allocated per call as theirs is), each in its native layout: ``jax.lax.scan`` and
``jax.lax.associative_scan`` under ``jit`` and torch's ``associative_scan`` under
``torch.compile`` on (T, N); torchlpc's first-order filter (C++/OpenMP, built from its sdist
against the installed torch) and philtorch's ``lpv.linear_recurrence`` (C++; its wheels need
torch 2.14, so it runs in ``make peers``' second environment) on (N, T), channels as the batch.
Each peer's output is checked against the float64 loop (on the first 1024 steps of at most 64
channels of the same inputs) before it is timed: a peer that computes something else fails.
A peer that is not installed is skipped (n/a), not failed; so is torch's compiled scan when
``CI=true`` or ``LRBENCH_BENCH_SKIP_COMPILE=1`` (``make bench`` sets it unless FULL=1): compiling
takes 30-60 s a shape on 2 cores. Times and time ratios only, lower is better; ``version`` is
set by hand: bump it when what is measured changes."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import torch

import lrbench

from lrbench.reference import forward64

from .common import inputs, interleaved_medians, setup_once

PEERS = ["jax-scan", "jax-associative-scan", "torch-compiled-assoc", "torchlpc", "philtorch"]
MODULES = {
    "jax-scan": "jax",
    "jax-associative-scan": "jax",
    "torchlpc": "torchlpc",
    "philtorch": "philtorch",
}
# The peer grid: T * N = 2^22 from one channel to 4096.
SHAPES = ["4194304x1", "1048576x4", "262144x16", "65536x256", "4096x4096"]
CHECK_T, CHECK_N = 1024, 64


def _jax(kind, a, x):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as e:
        raise NotImplementedError(f"jax is not installed: {e}") from e
    a, x = jnp.asarray(a.numpy()), jnp.asarray(x.numpy())
    if kind == "jax-scan":

        def run(a, x):
            def step(h, ax):
                h = ax[0] * h + ax[1]
                return h, h

            return jax.lax.scan(step, jnp.zeros_like(x[0]), (a, x))[1]
    else:

        def run(a, x):
            def combine(l, r):
                return l[0] * r[0], r[0] * l[1] + r[1]

            return jax.lax.associative_scan(combine, (a, x))[1]

    fn = jax.jit(run)
    return lambda: fn(a, x).block_until_ready(), lambda h: torch.from_numpy(np.array(h))


def _compile_skipped() -> bool:
    """torch.compile takes 30-60 s a shape on 2 cores: not on CI, nor in ``make bench``'s subset."""
    return os.environ.get("CI") == "true" or os.environ.get("LRBENCH_BENCH_SKIP_COMPILE") == "1"


def _torch_compiled(a, x):
    if _compile_skipped():
        raise NotImplementedError(
            "torch.compile takes 30-60 s a shape here; not run on CI or when "
            "LRBENCH_BENCH_SKIP_COMPILE=1 (make bench without FULL=1)"
        )
    from torch._higher_order_ops.associative_scan import associative_scan

    def combine(l, r):
        return l[0] * r[0], r[0] * l[1] + r[1]

    fn = torch.compile(
        lambda a, x: associative_scan(combine, (a, x), dim=0, combine_mode="generic")[1]
    )
    return lambda: fn(a, x), lambda h: h


def _torchlpc(a, x):
    try:
        from torchlpc import sample_wise_lpc
    except ImportError as e:
        raise NotImplementedError(f"torchlpc is not installed: {e}") from e
    # y[t] = x[t] - A[t] y[t-1]: channels as the batch, one coefficient per step
    xb, Ab = x.T.contiguous(), (-a).T.contiguous().unsqueeze(-1)
    return lambda: sample_wise_lpc(xb, Ab), lambda h: h.T


def _philtorch(a, x):
    try:
        from philtorch.lpv import linear_recurrence
    except ImportError as e:
        raise NotImplementedError(
            f"philtorch is not installed: {e} (its wheels need torch 2.14: `make peers`)"
        ) from e
    # h[n + 1] = a[n] h[n] + x[n] from h[0] = init, returning h[1..]: channels as the batch
    ab, xb, init = a.T.contiguous(), x.T.contiguous(), torch.zeros(x.shape[1])
    return lambda: linear_recurrence(ab, init, xb), lambda h: h.T


def _call(subject: str, a, x):
    """(call, to_tn): a scan of (T, N) inputs a, x by ``subject``, and the map from its output to
    (T, N)."""
    if subject.startswith("jax"):
        return _jax(subject, a, x)
    if subject == "torch-compiled-assoc":
        return _torch_compiled(a, x)
    if subject == "torchlpc":
        return _torchlpc(a, x)
    if subject == "philtorch":
        return _philtorch(a, x)
    return lambda: lrbench.linear_recurrence(a, x, backend=subject), lambda h: h


def check(subject: str, a, x) -> None:
    """``subject`` on the first CHECK_T steps of at most CHECK_N channels of (a, x) against the
    float64 loop, within the test suite's fp32 tolerance; AssertionError naming it otherwise."""
    a, x = a[:CHECK_T, :CHECK_N].contiguous(), x[:CHECK_T, :CHECK_N].contiguous()
    call, to_tn = _call(subject, a, x)
    h = to_tn(call()).to(torch.float64)
    ref = torch.from_numpy(forward64(a, x, None, False))
    scale = float(ref.abs().max())
    err = float((h - ref).abs().max()) if h.shape == ref.shape else math.inf
    if not err <= 1e-6 + 2e-5 * scale:
        raise AssertionError(
            f"{subject}: output {tuple(h.shape)} differs from the float64 loop "
            f"{tuple(ref.shape)} by {err:.3g} (allowed {1e-6 + 2e-5 * scale:.3g})"
        )


def make(subject: str, T: int, N: int):
    """(call): a checked, warmed-up scan of seeded fp32 (T, N) inputs by ``subject`` (a peer or
    lrbench's)."""
    a, x = inputs(T, N, "float32", "cpu")
    torch.set_grad_enabled(False)
    check(subject, a, x)
    call = _call(subject, a, x)[0]
    call()
    return call


class Peers:
    version = "1"
    params = (PEERS + ["auto"], SHAPES)
    param_names = ["subject", "TxN"]
    timeout = 600

    @setup_once
    def setup(self, subject, TxN):
        T, N = map(int, TxN.split("x"))
        self.call = make(subject, T, N)

    def time_forward(self, subject, TxN):
        self.call()


def _installed(peer: str) -> bool:
    if peer == "torch-compiled-assoc":
        return not _compile_skipped()
    try:
        __import__(MODULES[peer])
    except ImportError:
        return False
    return True


class AutoVsPeers:
    """auto's time over the fastest installed peer's, at the worst shape (<= 1: auto at least as
    fast as every peer at every shape). Each shape times its subjects in ``ROUNDS`` interleaved
    rounds and keeps each one's median: a fresh 64 MB output (auto's, allocated per call) took
    15-90 ms to page in across spells of this VM, and one such spell decided the whole result.
    The worst shape is printed to stderr. Version 1 was one median per subject (before aad415b);
    2 is the interleaved rounds; 3 the peer grid of T * N = 2^22 (before, five shapes of 2^20 to
    2^24 elements) with philtorch and the float64 check. (Until 2026-12 this was
    ``track_worst_peer_over_auto_higher_is_better``, its inverse; the committed results were
    converted.)"""

    version = "3"
    timeout = 1800
    ROUNDS = 3

    def setup(self):
        if not any(_installed(p) for p in PEERS):
            raise NotImplementedError(
                "no peer is installed (pip install -e '.[peers]'; torch's "
                "compiled scan is off with CI=true or LRBENCH_BENCH_SKIP_COMPILE=1)"
            )

    def track_auto_over_fastest_peer(self):
        worst, where = 0.0, None
        for TxN in SHAPES:
            T, N = map(int, TxN.split("x"))
            calls = {}
            for subject in ["auto"] + PEERS:
                try:
                    calls[subject] = make(subject, T, N)
                except NotImplementedError:
                    continue
            times = interleaved_medians(calls, self.ROUNDS)
            for p in calls.keys() - {"auto"}:
                if times["auto"] / times[p] > worst:
                    worst, where = times["auto"] / times[p], (TxN, p, times[p], times["auto"])
        if where is None:
            raise NotImplementedError("no installed peer could run any shape")
        print(
            f"worst: {where[0]}: {where[1]} {where[2] * 1e3:.2f} ms, auto {where[3] * 1e3:.2f} ms",
            file=sys.stderr,
        )
        return worst

    track_auto_over_fastest_peer.unit = "auto / fastest peer time"
