"""Packed variable-length sequences (``cu_seqlens``) against the padded batch of the same ones."""

from __future__ import annotations

import torch

import lrbench

from .common import setup_once

B, N = 16, 256


class PackedVsPadded:
    """B sequences of lengths spread over [T/8, T] (seeded): one packed call over their total
    length, or one call over the (T, B, N) batch padded to the longest."""

    version = "1"  # set by hand: bump it when what is measured changes
    params = ([1 << 10, 1 << 14], ["packed", "padded"])
    param_names = ["T", "layout"]
    timeout = 120

    @setup_once
    def setup(self, T, layout):
        g = torch.Generator().manual_seed(0)
        lengths = torch.randint(T // 8, T + 1, (B,), generator=g)
        lengths[0] = T
        if layout == "packed":
            total = int(lengths.sum())
            self.a, self.x = torch.rand(total, N, generator=g), torch.randn(total, N, generator=g)
            self.kw = {
                "cu_seqlens": torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
            }
        else:
            self.a, self.x = torch.rand(T, B, N, generator=g), torch.randn(T, B, N, generator=g)
            self.kw = {}
        self.out = torch.empty_like(self.x)
        self.time_scan(T, layout)

    def time_scan(self, T, layout):
        lrbench.linear_recurrence(self.a, self.x, out=self.out, **self.kw)
