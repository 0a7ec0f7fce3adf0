"""Bitwise reproducibility: no atomics, no data races; the same inputs give the same bits."""

from __future__ import annotations

import pytest
import torch

from conftest import CPU_BACKENDS, make_inputs, run


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("T,N", [(1025, 1), (4097, 3), (300, 257)])
def test_bitwise_deterministic(backend, T, N, small_chunks):
    if backend == "torch-loop" and T > 1000:
        T = 999
    a, x, h0 = make_inputs(T, N, torch.float32, gates="long")
    outs = []
    for _ in range(3):
        a_, x_ = a.clone().requires_grad_(), x.clone().requires_grad_()
        h = run(backend, a_, x_, h0)
        h.pow(2).sum().backward()
        outs.append((h.detach(), a_.grad, x_.grad))
    for o in outs[1:]:
        for u, v in zip(o, outs[0]):
            assert torch.equal(u, v)
