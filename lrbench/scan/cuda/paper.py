"""``cuda-paper``: Martin & Cundy's three-kernel parallel scan, ported from their repository.

``paper.cu`` keeps the algorithm (reduction -> serial scan of block carries -> warp
re-scan, one warp per time chunk, lanes over channels, 1024 threads, <= 2 blocks per SM) and fixes
its defects: the SM count is queried, scratch comes from torch's allocator, kernels run on the
caller's stream. The backward is the paper's: the same kernels on the shifted gates in the other
direction (§2.2), so it is as fast as their TensorFlow op's, not fused. This row reproduces Table 1.
"""

from __future__ import annotations

import torch

from . import launch as _cupy
from .._common import backward_by_reverse_scan

DTYPES = (torch.float32,)
DEVICES = ("cuda",)
UNAVAILABLE = _cupy.unavailable()
THREADS = 1024
BLOCKS_PER_SM = 2


def forward(a, x, h0, reverse, out=None):
    T, N = a.shape
    dev = a.device
    n_blocks = max(1, min(-(-T // 32), BLOCKS_PER_SM * _cupy.sm_count(dev.index or 0)))
    h = torch.empty_like(x) if out is None else out
    scratch = torch.empty((2, n_blocks, 33, N), dtype=torch.float32, device=dev)
    ds, hs = _cupy.ptr(scratch[0]), _cupy.ptr(scratch[1])
    T_, N_, rev = _cupy.i64(T), _cupy.i64(N), _cupy.i32(reverse)
    grid, block = (n_blocks,), (THREADS,)
    _cupy.launch(
        "paper",
        "reduction_kernel",
        dev,
        grid,
        block,
        (_cupy.ptr(a), _cupy.ptr(x), _cupy.ptr(h0), ds, hs, T_, N_, rev),
    )
    _cupy.launch("paper", "block_scan_kernel", dev, grid, block, (ds, hs, N_, _cupy.i32(n_blocks)))
    _cupy.launch(
        "paper",
        "warp_scan_kernel",
        dev,
        grid,
        block,
        (_cupy.ptr(a), _cupy.ptr(x), _cupy.ptr(h0), ds, hs, _cupy.ptr(h), T_, N_, rev),
    )
    return h


def backward(a, h, h0, gh, reverse):
    return backward_by_reverse_scan(forward, a, h, h0, gh, reverse)
