"""``cuda-scan``: our single-pass tiled scan with decoupled look-back, ``kernels/scan.cu``.

Reads a and x once and writes h once (12 B per fp32 element; the fused backward 20 B more), in
fp32, bf16 and fp16 with fp32 accumulation. A block owns ``S * ITEMS`` time steps by ``CB``
channels; tiles along time are chained by decoupled look-back. Dispatch: with at least
``SERIAL_MIN_N`` channels there is a thread per channel to spare and the serial kernel is already
at the memory floor, and float64 has only the serial kernel; both go to ``kernels/serial.cu``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import _cupy, cuda_serial

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
DEVICES = ("cuda",)
UNAVAILABLE = _cupy.unavailable()

ITEMS = 8             # LRB_ITEMS in kernels/scan.cu: time steps per thread
THREADS = 256
MAX_CB = 32           # channels per block when N is large
SERIAL_MIN_N = 1 << 17
WINDOW = 16           # look-back window in tiles: fixed, so results are bitwise deterministic


@dataclass(frozen=True)
class Plan:
    CB: int           # channels per block
    S: int            # time slices per block (threads = CB * S)
    n_cg: int         # channel groups
    n_tb: int         # tiles along time
    vec: bool         # 16-byte vector loads and stores

    @property
    def rows(self) -> int:
        return self.S * ITEMS

    def smem_bytes(self, tiles: int) -> int:
        n = self.rows * self.CB
        padded = n + (n >> 5) + 1
        return 4 * (tiles * padded + 2 * self.S * self.CB + self.CB)


def plan(T: int, N: int, dtype: torch.dtype, tensors) -> Plan:
    CB = min(N, MAX_CB)
    S = THREADS // CB
    V = 16 // dtype.itemsize
    vec = CB % V == 0 and N % V == 0 and all(t.data_ptr() % 16 == 0 for t in tensors)
    return Plan(CB, S, -(-N // CB), -(-T // (S * ITEMS)), vec)


def use_serial(T: int, N: int, dtype: torch.dtype) -> bool:
    return dtype == torch.float64 or N >= SERIAL_MIN_N


def _scratch(p: Plan, N: int, device):
    state = torch.zeros(1 + p.n_tb * p.n_cg, dtype=torch.int32, device=device)
    agg = torch.empty((3, p.n_tb, N), dtype=torch.float32, device=device)
    return state, agg


def _tail(p: Plan, T, N, reverse, state, agg):
    return (_cupy.i64(T), _cupy.i64(N), _cupy.i32(reverse), _cupy.i32(p.CB), _cupy.i32(p.n_cg),
            _cupy.i32(p.vec), _cupy.i32(WINDOW), _cupy.ptr(state), _cupy.ptr(agg[0]), _cupy.ptr(agg[1]),
            _cupy.ptr(agg[2]))


def forward(a, x, h0, reverse, out=None):
    T, N = a.shape
    if use_serial(T, N, a.dtype):
        return cuda_serial.forward(a, x, h0, reverse, out)
    h = torch.empty_like(x) if out is None else out
    p = plan(T, N, a.dtype, (a, x, h))
    state, agg = _scratch(p, N, a.device)
    args = (_cupy.ptr(a), _cupy.ptr(x), _cupy.ptr(h0), _cupy.ptr(h)) + _tail(p, T, N, reverse, state, agg)
    _cupy.launch("scan", f"scan_forward_{_cupy.SUFFIX[a.dtype]}", a.device, (p.n_tb * p.n_cg,),
                 (p.CB * p.S,), args, smem=p.smem_bytes(2))
    return h


def backward(a, h, h0, gh, reverse):
    T, N = a.shape
    if use_serial(T, N, a.dtype):
        return cuda_serial.backward(a, h, h0, gh, reverse)
    ga, gx = torch.empty_like(a), torch.empty_like(a)
    gh0 = torch.empty_like(h0) if h0 is not None else None
    p = plan(T, N, a.dtype, (a, h, gh, ga, gx))
    state, agg = _scratch(p, N, a.device)
    args = (_cupy.ptr(a), _cupy.ptr(h), _cupy.ptr(h0), _cupy.ptr(gh), _cupy.ptr(ga), _cupy.ptr(gx),
            _cupy.ptr(gh0)) + _tail(p, T, N, reverse, state, agg)
    _cupy.launch("scan", f"scan_backward_{_cupy.SUFFIX[a.dtype]}", a.device, (p.n_tb * p.n_cg,),
                 (p.CB * p.S,), args, smem=p.smem_bytes(3))
    return ga, gx, gh0
