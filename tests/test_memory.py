"""Big outputs of linear_recurrence reuse the buffers of outputs already freed (lrbench.memory), and
never one that a live tensor or view still uses."""
from __future__ import annotations

import pytest
import torch

import lrbench
from lrbench import memory


@pytest.fixture
def pool(monkeypatch):
    monkeypatch.setattr(memory, "MIN_BYTES", 4096)
    memory.release()
    yield
    memory.release()


def _inputs(T=1000, N=8, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return torch.rand(T, N, generator=g).to(dtype), torch.randn(T, N, generator=g).to(dtype)


def _span(t):
    s = t.untyped_storage()
    return s.data_ptr(), s.data_ptr() + s.nbytes()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64])
def test_a_freed_output_is_reused_and_right(pool, dtype):
    a, x = _inputs(dtype=dtype)
    want = lrbench.linear_recurrence(a, x, backend="reference")
    h = lrbench.linear_recurrence(a, x, backend="cpu-serial")
    first = h.data_ptr()
    h.fill_(float("nan"))                           # stale contents must all be overwritten
    del h
    h = lrbench.linear_recurrence(a, x, backend="cpu-serial")
    assert h.data_ptr() == first and h.dtype == dtype and h.shape == x.shape and h.is_contiguous()
    assert first % 64 == 0                          # aligned like torch.empty's memory
    torch.testing.assert_close(h, want)


def test_a_buffer_in_use_by_a_view_is_not_handed_out(pool):
    a, x = _inputs()
    h = lrbench.linear_recurrence(a, x, backend="cpu-serial")
    view = h[10:]
    keep = view.clone()
    del h
    others = [lrbench.linear_recurrence(a, x * 2, backend="cpu-serial") for _ in range(3)]
    lo, hi = _span(view)
    for o in others:
        olo, ohi = _span(o)
        assert ohi <= lo or hi <= olo, "a new output shares memory with a live view"
    torch.testing.assert_close(view, keep)


def test_keep_bytes_bounds_the_pool(pool, monkeypatch):
    a, x = _inputs()
    monkeypatch.setattr(memory, "KEEP_BYTES", 0)
    h = lrbench.linear_recurrence(a, x, backend="cpu-serial")
    del h
    assert memory._kept_bytes == 0 and not any(memory._kept.values())
