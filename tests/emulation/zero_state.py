"""Cases for the zero-state rule (issue 14, kernels/README.md): wherever the serial loop's answer is
finite a kernel returns it, and wherever it is NaN, NaN, forward and backward.

Two kinds of input, built in logical step order (flipped when ``reverse``) so that the same
logical layout meets the forward scan and the backward one (which runs the other way over the
shifted gates a[t+1]):

- ``overflow``: gates of 1e3 (products overflow fp32 after 13 steps) over a zero state at both
  ends (a third of T each), for the forward (x = 0 on a prefix) and the backward (gh = 0 on a
  suffix); a gate of 0 starts each zero state after data, so every state of the serial loop is
  finite. Where N allows, each end spans more tiles than the look-back window. A combine that
  forms inf * 0 gives NaN.
- ``inf``, ``-inf``, ``nan``: one such gate at the first row of a forward tile over x = 0 before
  it (tile 0 with no h0, or a tile past the window), and one at the first row of a backward tile
  over gh = 0 after it: the serial loop multiplies the zero state by it, so NaN from there on.

The truth is the float64 serial loop (``lrbench.reference``); h0 is None or exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from conftest import TOL, assert_close
from emulation.cases import DTYPES, MODULES
from lrbench.scan.cuda import scan as cuda_scan
from lrbench import reference

BIG = 1e3


@dataclass(frozen=True)
class ZeroCase:
    backend: str
    kind: str  # "overflow", "inf", "-inf" or "nan"
    T: int
    N: int
    h0: bool  # h0 given as exact zeros (else None)
    reverse: bool
    tile: int = 0  # non-finite kinds: the forward tile whose first row takes the gate
    dt: str = "fp32"

    @property
    def id(self) -> str:
        return (
            f"{self.backend}-{self.dt}-{self.kind}-T{self.T}-N{self.N}-h0{int(self.h0)}"
            f"-rev{int(self.reverse)}-tile{self.tile}"
        )


def _rows(N: int, direction: str = "forward") -> int:
    return cuda_scan.plan(1, N, torch.float32, (), direction).rows


def _past_window(N: int, direction: str = "forward") -> int:
    """Steps in more tiles than cuda-scan's look-back window holds, so the window's base is a
    tile of the same region."""
    p = cuda_scan.plan(1, N, torch.float32, (), direction)
    return (p.window + 3) * p.rows + 5


def inputs(case: ZeroCase):
    """(a, x, h0, gh) in float64, physical order."""
    T, N = case.T, case.N
    g = torch.Generator().manual_seed(T + 7 * N)
    a = torch.sigmoid(torch.randn(T, N, generator=g, dtype=torch.float64))
    x = torch.randn(T, N, generator=g, dtype=torch.float64)
    gh = torch.randn(T, N, generator=g, dtype=torch.float64)
    if case.kind == "overflow":
        P = Q = T // 3
        a[:P], a[T - Q :] = BIG, BIG
        a[P], a[T - Q] = 0.0, 0.0  # the backward's zero state, and the forward's
        x[:P], x[T - Q :] = 0.0, 0.0
        gh[:P], gh[T - Q :] = 0.0, 0.0
    else:
        bad = float(case.kind)
        kf = case.tile * _rows(N)  # forward tile's row 0
        rb = _rows(N, "backward")
        jb = cuda_scan.plan(1, N, torch.float32, (), "backward").window + 2
        kb = T - (jb if jb * rb < T else 1) * rb  # backward tile's row 0
        assert 0 <= kf < T and 0 < kb < T
        a[kf], x[:kf] = bad, 0.0
        a[kb], gh[kb:] = bad, 0.0  # backward step T-kb's gate is a[kb]
    if case.reverse:
        a, x, gh = (t.flip(0) for t in (a, x, gh))
    h0 = torch.zeros(N, dtype=torch.float64) if case.h0 else None
    return a, x, h0, gh


def cases() -> list[ZeroCase]:
    out = []
    for N, rev in ((33, False), (33, True), (32, True), (4, False), (1, False)):
        T = (
            3 * max(_past_window(N), _past_window(N, "backward"))
            if N >= 32
            else 3 * 3 * _rows(N) + 7
        )
        out.append(ZeroCase("cuda-scan", "overflow", T, N, h0=rev, reverse=rev))
    # Every zero state of the wide overflow cases covers a whole window and its base tile.
    assert all(
        c.T // 3 > (p.window + 1) * p.rows
        for c in out
        if c.N >= 32
        for p in (cuda_scan.plan(1, c.N, torch.float32, (), d) for d in ("forward", "backward"))
    )
    T, w = 2 * _past_window(33, "backward"), cuda_scan.plan(1, 33, torch.float32, ()).window
    for kind, h0, rev, tile in (
        ("inf", False, False, 0),
        ("nan", True, True, 0),
        ("-inf", False, True, w + 3),
        ("inf", True, False, w + 5),
    ):
        out.append(ZeroCase("cuda-scan", kind, T, 33, h0, rev, tile))
    out.append(ZeroCase("cuda-scan", "inf", 3 * _rows(1, "backward") + 1, 1, False, True, 0))
    out.append(ZeroCase("cuda-scan", "overflow", 3 * _past_window(33), 33, False, False, dt="bf16"))
    for kind, h0, rev in (("overflow", True, False), ("inf", False, True)):
        out.append(ZeroCase("cuda-paper", kind, 3 * _past_window(33), 33, h0, rev))
        out.append(ZeroCase("cuda-serial", kind, 3 * _past_window(33), 5, h0, rev))
    return out


def check(case: ZeroCase, device: str = "cpu") -> None:
    """Forward, and the backward on the true h (so that each is judged on its own); every
    output that differs is named."""
    dtype = DTYPES[case.dt]
    a, x, h0, gh = (None if t is None else t.to(dtype) for t in inputs(case))
    d = lambda t: None if t is None else t.double()
    with np.errstate(invalid="ignore"):  # inf * 0 in the serial loop: NaN, as meant
        ref = torch.from_numpy(reference.forward64(a, x, h0, case.reverse))
        rga, rgx, rgh0 = reference.backward(d(a), ref, d(h0), d(gh), case.reverse)
    if case.kind == "overflow":
        assert torch.isfinite(ref).all() and torch.isfinite(rga).all() and torch.isfinite(rgx).all()
    else:
        assert ref.isnan().any() and rgx.isnan().any() and not rgx.isnan().all()
    mod = MODULES[case.backend]
    a_, x_, h0_, gh_, h_ = (None if t is None else t.to(device, dtype) for t in (a, x, h0, gh, ref))
    h = mod.forward(a_, x_, h0_, case.reverse)
    ga, gx, gh0 = mod.backward(a_, h_, h0_, gh_, case.reverse)
    wrong = []
    for name, out, r in (("h", h, ref), ("dx", gx, rgx), ("da", ga, rga)) + (
        (("dh0", gh0, rgh0),) if case.h0 else ()
    ):
        try:
            assert_close(name, out.cpu(), r, **TOL[dtype])
        except AssertionError as e:
            wrong.append(str(e))
    assert not wrong, "; ".join(wrong)
