"""``triton-scan``: a Triton kernel, ``tl.associative_scan`` over time chunks with a carried prefix.

A program owns ``BN`` channels and walks T in chunks of ``BT`` steps: each chunk is scanned in
parallel with the affine combine and offset by the carry from the previous chunk (fp32
accumulation for every input type). ``reverse`` is index arithmetic. The backward is one fused
pass in the other direction: ``g``, ``dx = g`` and ``da = g * h[t-1]``.

Without a GPU the kernels run in Triton's interpreter when ``TRITON_INTERPRET=1`` is set before
this module is imported (the tests do that); the backend then takes CPU tensors.
"""

from __future__ import annotations

import os

import torch

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
DEVICES = ("cpu",) if INTERPRET else ("cuda",)
UNAVAILABLE = None
BT, BN = (16, 16) if INTERPRET else (64, 32)

try:
    import triton
    import triton.language as tl
except ImportError as e:  # pragma: no cover - depends on the environment
    UNAVAILABLE = f"Triton is not installed (pip install -e '.[gpu]'): {e}"
else:
    if not INTERPRET and not torch.cuda.is_available():
        UNAVAILABLE = (
            "no CUDA device (torch.cuda.is_available() is False); set TRITON_INTERPRET=1 "
            "before importing lrbench to run it on the CPU in Triton's interpreter"
        )

if UNAVAILABLE is None:

    @triton.jit
    def _finite(v):
        return (v - v) == 0  # False for inf and NaN

    @triton.jit
    def _combine(a1, h1, f1, a2, h2, f2):
        # (A, H) with F, the segment's first gate: a state of exactly 0 entering a segment whose
        # first gate is finite contributes exactly 0 (no inf * 0 from an overflowed product); a
        # non-finite first gate times 0 is NaN, as in the serial loop
        # after a gate of 0 the product stays 0, even if the later ones overflow (0 * inf)
        return (
            tl.where(a1 == 0, a1, a1 * a2),
            tl.where((h1 == 0) & _finite(f2), h2, a2 * h1 + h2),
            f1,
        )

    @triton.jit
    def _carry_in(ca, ch, carry, first):
        keep = (carry == 0) & _finite(first)
        return tl.where(keep[None, :], ch, ch + ca * carry[None, :])

    @triton.jit
    def _first_row(v, BT: tl.constexpr):
        return tl.sum(tl.where((tl.arange(0, BT) == 0)[:, None], v, 0.0), axis=0)

    @triton.jit
    def _last_row(v, BT: tl.constexpr):
        return tl.sum(tl.where((tl.arange(0, BT) == BT - 1)[:, None], v, 0.0), axis=0)

    @triton.jit
    def _forward_kernel(
        A,
        X,
        H0,
        H,
        T,
        N,
        REVERSE: tl.constexpr,
        HAS_H0: tl.constexpr,
        BT: tl.constexpr,
        BN: tl.constexpr,
    ):
        cols = tl.program_id(0) * BN + tl.arange(0, BN)
        cm = cols < N
        if HAS_H0:
            carry = tl.load(H0 + cols, mask=cm, other=0.0).to(tl.float32)
        else:
            carry = tl.zeros([BN], dtype=tl.float32)
        for t0 in range(0, T, BT):
            u = t0 + tl.arange(0, BT)
            if REVERSE:
                rows = T - 1 - u
            else:
                rows = u
            m = (u < T)[:, None] & cm[None, :]
            off = rows.to(tl.int64)[:, None] * N + cols[None, :]
            a = tl.load(A + off, mask=m, other=1.0).to(tl.float32)
            x = tl.load(X + off, mask=m, other=0.0).to(tl.float32)
            ca, ch, _ = tl.associative_scan((a, x, a), 0, _combine)
            h = _carry_in(ca, ch, carry, _first_row(a, BT))
            tl.store(H + off, h.to(H.dtype.element_ty), mask=m)
            carry = _last_row(h, BT)

    @triton.jit
    def _backward_kernel(
        A,
        Hs,
        H0,
        GH,
        GA,
        GX,
        GH0,
        T,
        N,
        REVERSE: tl.constexpr,
        HAS_H0: tl.constexpr,
        BT: tl.constexpr,
        BN: tl.constexpr,
    ):
        # Logical step u of the backward scan runs opposite to the forward: u = 0 is the forward's
        # last step. Its gate is a at step u-1 and the state it multiplies is h at step u+1.
        cols = tl.program_id(0) * BN + tl.arange(0, BN)
        cm = cols < N
        g = tl.zeros([BN], dtype=tl.float32)
        if HAS_H0:
            h0 = tl.load(H0 + cols, mask=cm, other=0.0).to(tl.float32)
        for t0 in range(0, T, BT):
            u = t0 + tl.arange(0, BT)
            if REVERSE:
                rows, prev_rows, next_rows = u, u - 1, u + 1
            else:
                rows, prev_rows, next_rows = T - 1 - u, T - u, T - 2 - u
            valid = (u < T)[:, None] & cm[None, :]
            c64 = cols[None, :].to(tl.int64)
            gate = tl.load(
                A + prev_rows.to(tl.int64)[:, None] * N + c64,
                mask=valid & (u >= 1)[:, None],
                other=1.0,
            ).to(tl.float32)
            off = rows.to(tl.int64)[:, None] * N + c64
            gh = tl.load(GH + off, mask=valid, other=0.0).to(tl.float32)
            hp = tl.load(
                Hs + next_rows.to(tl.int64)[:, None] * N + c64,
                mask=valid & (u + 1 < T)[:, None],
                other=0.0,
            ).to(tl.float32)
            if HAS_H0:
                hp = tl.where((u + 1 == T)[:, None], h0[None, :], hp)
            ca, cg, _ = tl.associative_scan((gate, gh, gate), 0, _combine)
            gt = _carry_in(ca, cg, g, _first_row(gate, BT))
            tl.store(GX + off, gt.to(GX.dtype.element_ty), mask=valid)
            tl.store(GA + off, (gt * hp).to(GA.dtype.element_ty), mask=valid)
            g = _last_row(gt, BT)
        if HAS_H0:
            if REVERSE:
                first = T - 1
            else:
                first = 0
            a0 = tl.load(A + first.to(tl.int64) * N + cols, mask=cm, other=0.0).to(tl.float32)
            tl.store(GH0 + cols, (a0 * g).to(GH0.dtype.element_ty), mask=cm)


def _grid(N):
    return (triton.cdiv(N, BN),)


def forward(a, x, h0, reverse, out=None):
    T, N = a.shape
    h = torch.empty_like(x) if out is None else out
    _forward_kernel[_grid(N)](
        a,
        x,
        h0 if h0 is not None else x,
        h,
        T,
        N,
        REVERSE=bool(reverse),
        HAS_H0=h0 is not None,
        BT=BT,
        BN=BN,
    )
    return h


def backward(a, h, h0, gh, reverse):
    T, N = a.shape
    ga, gx = torch.empty_like(a), torch.empty_like(a)
    gh0 = torch.empty_like(h0) if h0 is not None else None
    _backward_kernel[_grid(N)](
        a,
        h,
        h0 if h0 is not None else a,
        gh,
        ga,
        gx,
        gh0 if gh0 is not None else ga,
        T,
        N,
        REVERSE=bool(reverse),
        HAS_H0=h0 is not None,
        BT=BT,
        BN=BN,
    )
    return ga, gx, gh0
