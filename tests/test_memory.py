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
    h.fill_(float("nan"))  # stale contents must all be overwritten
    del h
    h = lrbench.linear_recurrence(a, x, backend="cpu-serial")
    assert h.data_ptr() == first and h.dtype == dtype and h.shape == x.shape and h.is_contiguous()
    assert first % 64 == 0  # aligned like torch.empty's memory
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


def test_a_workload_of_changing_sizes_does_not_fill_the_pool(pool):
    """Defect: the pool never evicted, so a new T each call held up to KEEP_BYTES never reused."""
    sizes = []
    for T in range(1000, 1400, 10):  # 40 sizes, each output freed at once
        a, x = _inputs(T=T)
        sizes.append(lrbench.linear_recurrence(a, x, backend="cpu-serial").nbytes)
    assert memory.kept_bytes() <= (memory.KEEP_MISSES + 1) * max(sizes)
    assert memory.kept_bytes() > 0  # the newest ones are still kept


def test_a_steady_loop_keeps_reusing_its_buffers(pool):
    a, x = _inputs()
    ptrs = set()
    for _ in range(20):
        h1 = lrbench.linear_recurrence(a, x, backend="cpu-serial")
        h2 = lrbench.linear_recurrence(a, x[::1] * 2, backend="cpu-serial")
        ptrs |= {h1.data_ptr(), h2.data_ptr()}
        del h1, h2
    assert len(ptrs) <= 3  # x * 2 is one more buffer of the same size


def test_no_buffer_is_handed_back_at_interpreter_exit(tmp_path):
    """Defect: weakref.finalize's default atexit=True gave live outputs' buffers back at shutdown,
    so an exit handler that ran later got a new output sharing memory with a live one."""
    script = tmp_path / "late.py"
    script.write_text(
        "import atexit\n"
        "def late():\n"
        "    h2 = lrbench.linear_recurrence(a, x * 2, backend='cpu-serial')\n"
        "    s1, s2 = h.untyped_storage().data_ptr(), h2.untyped_storage().data_ptr()\n"
        "    print('SHARED' if s1 == s2 else 'APART', flush=True)\n"
        "atexit.register(late)      # before any weakref.finalize exists: runs after their exit hook\n"
        "import torch, lrbench\n"
        "from lrbench import memory\n"
        "memory.MIN_BYTES = 4096\n"
        "a, x = torch.rand(1000, 8), torch.randn(1000, 8)\n"
        "h = lrbench.linear_recurrence(a, x, backend='cpu-serial')\n"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert "APART" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("backend", ["cpu-serial", "reference"])
def test_what_the_docs_say_of_resizing_outputs(backend):
    """The docs: no output of the Numba backends can be resized, small ones included; others can."""
    a, x = _inputs(T=8)
    h = lrbench.linear_recurrence(a, x, backend=backend)
    if backend == "reference":
        h.resize_(100, 8)
    else:
        with pytest.raises(RuntimeError, match="not resizable"):
            h.resize_(100, 8)
