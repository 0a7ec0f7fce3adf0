"""``cuda-scan``: our single-pass tiled scan with decoupled look-back, ``scan.cu``.

Reads a and x once and writes h once (12 B per fp32 element; the fused backward 20 B more), in
fp32, bf16 and fp16 with fp32 accumulation. A block owns ``S * L`` time steps by ``CB``
channels; tiles along time are chained by a parallel decoupled look-back over a fixed window. Dispatch: with at least
``SERIAL_MIN_N`` channels there is a thread per channel to spare and the serial kernel is already
at the memory floor, and float64 has only the serial kernel; both go to ``serial.cu``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import launch as _cupy
from . import serial as cuda_serial

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
DEVICES = ("cuda",)
UNAVAILABLE = _cupy.unavailable()

ITEMS = 8  # time steps per thread (L in scan.cu) ...
NARROW_ITEMS = {"forward": 16, "backward": 12}  # ... and for a narrow scan (one channel group)
THREADS = 256
MAX_CB = 32  # channels per block when N is large
SERIAL_MIN_N = 1 << 17
LOOKBACK_RUN = 8  # LRB_LOOKBACK_RUN: predecessors one thread folds in the look-back
MAX_WINDOW = 256  # look-back window in tiles: fixed per launch, so bitwise deterministic
WINDOW_CHANNELS = 4096  # window x channels per block: the look-back reads at most this many maps


@dataclass(frozen=True)
class Plan:
    CB: int  # channels per block
    S: int  # time slices per block (threads = CB * S)
    n_cg: int  # channel groups
    n_tb: int  # tiles along time
    vec: bool  # 16-byte vector loads and stores
    L: int = ITEMS  # time steps per thread
    window: int = 2  # look-back window W (tiles)

    @property
    def rows(self) -> int:
        return self.S * self.L

    @property
    def narrow(self) -> bool:
        return self.L != ITEMS

    def smem_bytes(self, tiles: int) -> int:
        n = self.rows * self.CB
        padded = n + (n >> 5) + 1
        return 4 * (tiles * padded + 4 * self.S * self.CB + self.CB)


def window(CB: int, S: int) -> int:
    """W: as wide as the parallel look-back folds in one pass (S threads x LOOKBACK_RUN), at most
    MAX_WINDOW, and at most WINDOW_CHANNELS / CB so the maps it reads stay below a tile's bytes."""
    return max(2, min(MAX_WINDOW, WINDOW_CHANNELS // CB, S * LOOKBACK_RUN + 1))


def plan(T: int, N: int, dtype: torch.dtype, tensors, direction: str = "forward") -> Plan:
    CB = min(N, MAX_CB)
    S = THREADS // CB
    n_cg = -(-N // CB)
    L = NARROW_ITEMS[direction] if n_cg == 1 else ITEMS
    V = 16 // dtype.itemsize
    vec = CB % V == 0 and N % V == 0 and all(t.data_ptr() % 16 == 0 for t in tensors)
    return Plan(CB, S, n_cg, -(-T // (S * L)), vec, L, window(CB, S))


def entry(direction: str, p: Plan, dtype: torch.dtype) -> str:
    return f"scan_{direction}{'_narrow_' if p.narrow else '_'}{_cupy.SUFFIX[dtype]}"


def use_serial(T: int, N: int, dtype: torch.dtype) -> bool:
    return dtype == torch.float64 or N >= SERIAL_MIN_N


def _scratch(p: Plan, N: int, device):
    state = torch.zeros(1 + p.n_tb * p.n_cg, dtype=torch.int32, device=device)
    agg = torch.empty((3, p.n_tb, N), dtype=torch.float32, device=device)
    return state, agg


def _tail(p: Plan, T, N, reverse, state, agg):
    return (
        _cupy.i64(T),
        _cupy.i64(N),
        _cupy.i32(reverse),
        _cupy.i32(p.CB),
        _cupy.i32(p.n_cg),
        _cupy.i32(p.vec),
        _cupy.i32(p.window),
        _cupy.ptr(state),
        _cupy.ptr(agg[0]),
        _cupy.ptr(agg[1]),
        _cupy.ptr(agg[2]),
    )


def forward(a, x, h0, reverse, out=None):
    T, N = a.shape
    if use_serial(T, N, a.dtype):
        return cuda_serial.forward(a, x, h0, reverse, out)
    h = torch.empty_like(x) if out is None else out
    p = plan(T, N, a.dtype, (a, x, h))
    state, agg = _scratch(p, N, a.device)
    args = (_cupy.ptr(a), _cupy.ptr(x), _cupy.ptr(h0), _cupy.ptr(h)) + _tail(
        p, T, N, reverse, state, agg
    )
    _cupy.launch(
        "scan",
        entry("forward", p, a.dtype),
        a.device,
        (p.n_tb * p.n_cg,),
        (p.CB * p.S,),
        args,
        smem=p.smem_bytes(2),
    )
    return h


def backward(a, h, h0, gh, reverse):
    T, N = a.shape
    if use_serial(T, N, a.dtype):
        return cuda_serial.backward(a, h, h0, gh, reverse)
    ga, gx = torch.empty_like(a), torch.empty_like(a)
    gh0 = torch.empty_like(h0) if h0 is not None else None
    p = plan(T, N, a.dtype, (a, h, gh, ga, gx), "backward")
    state, agg = _scratch(p, N, a.device)
    args = (
        _cupy.ptr(a),
        _cupy.ptr(h),
        _cupy.ptr(h0),
        _cupy.ptr(gh),
        _cupy.ptr(ga),
        _cupy.ptr(gx),
        _cupy.ptr(gh0),
    ) + _tail(p, T, N, reverse, state, agg)
    _cupy.launch(
        "scan",
        entry("backward", p, a.dtype),
        a.device,
        (p.n_tb * p.n_cg,),
        (p.CB * p.S,),
        args,
        smem=p.smem_bytes(3),
    )
    return ga, gx, gh0
