"""``cuda-serial``: the paper's serial CUDA baseline (SLR), ``serial.cu``.

One thread per channel, serial over T; h0 optional; the backward is fused into one reverse pass.
"""

from __future__ import annotations

import torch

from . import launch as _cupy

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
DEVICES = ("cuda",)
UNAVAILABLE = _cupy.unavailable()
THREADS = 256


def _grid(a: torch.Tensor) -> tuple[int]:
    N = a.shape[1]
    return (max(1, min(-(-N // THREADS), 32 * _cupy.sm_count(a.device.index or 0))),)


def forward(a, x, h0, reverse, out=None):
    T, N = a.shape
    h = torch.empty_like(x) if out is None else out
    args = (
        _cupy.ptr(a),
        _cupy.ptr(x),
        _cupy.ptr(h0),
        _cupy.ptr(h),
        _cupy.i64(T),
        _cupy.i64(N),
        _cupy.i32(reverse),
    )
    _cupy.launch(
        "serial", f"serial_forward_{_cupy.SUFFIX[a.dtype]}", a.device, _grid(a), (THREADS,), args
    )
    return h


def backward(a, h, h0, gh, reverse):
    T, N = a.shape
    ga, gx = torch.empty_like(a), torch.empty_like(a)
    gh0 = torch.empty_like(h0) if h0 is not None else None
    args = (
        _cupy.ptr(a),
        _cupy.ptr(h),
        _cupy.ptr(h0),
        _cupy.ptr(gh),
        _cupy.ptr(ga),
        _cupy.ptr(gx),
        _cupy.ptr(gh0),
        _cupy.i64(T),
        _cupy.i64(N),
        _cupy.i32(reverse),
    )
    _cupy.launch(
        "serial", f"serial_backward_{_cupy.SUFFIX[a.dtype]}", a.device, _grid(a), (THREADS,), args
    )
    return ga, gx, gh0
