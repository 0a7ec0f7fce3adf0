"""fp32 accuracy of the compiled CPU backends over a million steps with long-memory gates."""

from __future__ import annotations

import pytest
import torch

from conftest import run


@pytest.mark.parametrize("backend", ["cpu-serial", "cpu-chunked"])
@pytest.mark.parametrize("N", [1, 4])
def test_fp32_relative_error_at_2_20(backend, N):
    T = 1 << 20
    g = torch.Generator().manual_seed(20)
    a = (0.9 + 0.1 * torch.rand(T, N, generator=g, dtype=torch.float64)).float()
    x = torch.randn(T, N, generator=g, dtype=torch.float64).float()
    ref = run("reference", a.double(), x.double(), None)
    h = run(backend, a, x, None).double()
    rel = ((h - ref).abs().max() / ref.abs().max()).item()
    print(f"{backend} N={N}: normwise relative error {rel:.3g}")
    assert rel <= 1e-5
