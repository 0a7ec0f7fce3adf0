"""Every lrbench/scan/cuda/*.cu compiles through NVRTC for sm_80 and sm_90 with no register spills; the
host-side launch plan of cuda-scan stays inside the hardware's limits. No GPU needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lrbench import kernels
from lrbench.scan.cuda import scan as cuda_scan

if not os.environ.get("CI"):
    pytest.importorskip(
        "cuda.bindings.nvrtc", reason="NVRTC not installed (pip install -e '.[test]')"
    )

ENTRIES = {
    "serial": [
        f"serial_{d}_{t}" for d in ("forward", "backward") for t in ("f32", "f64", "f16", "bf16")
    ],
    "paper": ["reduction_kernel", "block_scan_kernel", "warp_scan_kernel"],
    "scan": [
        f"scan_{d}{w}{t}"
        for d in ("forward", "backward")
        for w in ("_", "_narrow_")
        for t in ("f32", "f16", "bf16")
    ],
}


def test_every_source_is_listed():
    assert sorted(p.stem for p in kernels.sources()) == sorted(ENTRIES)


@pytest.mark.parametrize("arch", kernels.ARCHS)
@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_compiles_without_spills(name, arch):
    records, log = kernels.compile_report(kernels.source(name), arch)
    print(log)
    assert sorted(r.function for r in records) == sorted(ENTRIES[name]), log
    for r in records:
        assert r.arch == arch
        assert r.spill_stores == 0 and r.spill_loads == 0, f"{r.function} spills on {arch}: {r}"
        assert r.stack_bytes == 0, f"{r.function} uses a stack frame on {arch}: {r}"
        assert 0 < r.registers <= 64, f"{r.function} uses {r.registers} registers on {arch}"
        if name == "paper":  # __launch_bounds__(1024, 2): two 1024-thread blocks per SM fit
            assert 2 * 1024 * r.registers <= 65536 and r.smem_bytes == 0, r


def test_cubin_cache_key_covers_included_headers(tmp_path, monkeypatch):
    """A changed common.cuh gives a new cubin, not the stale one (CuPy keyed on the .cu only)."""
    src = tmp_path / "kernels"
    src.mkdir()
    for p in kernels.KERNELS.glob("*.cu*"):
        (src / p.name).write_bytes(p.read_bytes())
    monkeypatch.setattr(kernels, "KERNELS", src)
    monkeypatch.setenv("LRBENCH_CACHE", str(tmp_path / "cache"))
    assert [p.name for p in kernels.includes(src / "serial.cu")] == ["serial.cu", "common.cuh"]
    first = kernels.cubin("serial", "sm_90")
    assert kernels.cubin("serial", "sm_90") == first and first.stat().st_size > 0
    with open(src / "common.cuh", "a") as f:
        f.write("\n// changed\n")
    second = kernels.cubin("serial", "sm_90")
    assert second != first and second.is_file()


def test_runtime_loads_the_cubin_built_with_the_report_flags(tmp_path, monkeypatch):
    """The backends load kernels.cubin's file (OPTIONS, no CuPy-added -ftz=true), not source."""
    import sys
    import types
    from lrbench.scan.cuda import launch as _cupy

    seen = []

    class Device:
        def __init__(self, i):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    fake = types.SimpleNamespace(
        RawModule=lambda **kw: seen.append(kw) or kw, cuda=types.SimpleNamespace(Device=Device)
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setenv("LRBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(_cupy, "arch", lambda device: "sm_80")
    _cupy._module.__wrapped__("serial", 0)
    assert list(seen[0]) == ["path"] and seen[0]["path"].endswith(".cubin")
    assert "-ftz=false" in kernels.OPTIONS and not any("ftz=true" in o for o in kernels.OPTIONS)


def test_compile_error_is_reported():
    bad = Path(__file__).parent / "data" / "undefined_name.cu"
    with pytest.raises(RuntimeError, match="undefined_name"):
        kernels.compile_report(bad, "sm_90")


def test_parse_ptxas_reads_spills():
    log = """ptxas info    : Compiling entry function 'scan_forward_f32' for 'sm_90'
ptxas info    : Function properties for scan_forward_f32
ptxas         .     24 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 16 bytes smem
"""
    (r,) = kernels.parse_ptxas(log)
    assert (
        r.function,
        r.arch,
        r.registers,
        r.stack_bytes,
        r.spill_stores,
        r.spill_loads,
        r.smem_bytes,
    ) == ("scan_forward_f32", "sm_90", 255, 24, 8, 12, 16)


@pytest.mark.parametrize("N", [1, 2, 3, 4, 7, 31, 32, 33, 100, 1024, 4099, 1 << 17])
@pytest.mark.parametrize("T", [1, 31, 2049, 1 << 20])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_scan_plan_fits_the_hardware(T, N, dtype):
    x = torch.empty(4)
    for direction, tiles in (("forward", 2), ("backward", 3)):
        p = cuda_scan.plan(T, N, dtype, (x,), direction)
        assert 1 <= p.CB * p.S <= cuda_scan.THREADS
        assert p.n_cg * p.CB >= N > (p.n_cg - 1) * p.CB
        assert p.n_tb * p.rows >= T > (p.n_tb - 1) * p.rows
        assert p.smem_bytes(tiles) <= 48 * 1024  # no opt-in needed
        assert p.n_tb * p.n_cg < 2**31  # grid.x limit
        # One pass of the parallel look-back folds the whole window.
        assert 2 <= p.window <= p.S * cuda_scan.LOOKBACK_RUN + 1
        assert p.narrow == (p.n_cg == 1)
        V = 16 // x.element_size() if dtype == torch.float32 else 8
        assert p.vec == (p.CB % V == 0 and N % V == 0)


def test_scan_plan_refuses_vectors_when_misaligned():
    x = torch.empty(64)
    assert cuda_scan.plan(4096, 32, torch.float32, (x,)).vec
    assert not cuda_scan.plan(4096, 32, torch.float32, (x[1:],)).vec
