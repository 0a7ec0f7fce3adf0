"""The unmodified lrbench/scan/cuda/*.cu, compiled with g++ against a CPU emulation of CUDA
(tests/emulation/include/cuda_emu.h), launched through the backends' own Python, against the
float64 reference. Blocks run concurrently in a shuffled order, so the look-back really waits.
Marked ``emulation``; needs g++ (x86-64). Builds are cached in $TMPDIR/lrbench-emu.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emulation import cases as kc
from emulation import zero_state
from emulation.emu import Emulator, emulated

pytestmark = [
    pytest.mark.emulation,
    pytest.mark.skipif(
        shutil.which(os.environ.get("CXX", "g++")) is None or platform.machine() != "x86_64",
        reason="the emulation needs g++ on x86-64",
    ),
]
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def emulator():
    em = Emulator(seed=1, workers=4)
    with emulated(em):
        yield em


@pytest.mark.parametrize("case", kc.cases(), ids=lambda c: c.id)
def test_kernel_matches_reference(case, emulator, poisoned):
    kc.check(case)


@pytest.mark.parametrize("case", zero_state.cases(), ids=lambda c: c.id)
def test_zero_state_rule(case, emulator, poisoned):
    """Gate products that overflow, and inf or NaN gates, over an exactly-zero state: the serial
    loop's answer wherever it is finite, NaN wherever it is NaN (kernels/README.md)."""
    zero_state.check(case)


@pytest.mark.parametrize(
    "case",
    [
        c
        for c in zero_state.cases()
        if c.kind == "overflow" and c.N == 33 and c.dt == "fp32" and not c.reverse
    ],
    ids=lambda c: c.id,
)
def test_broken_zero_state_rule_is_caught(case):
    """The same check on kernels built without the rule (-DLRB_BROKEN_ZERO_STATE=1) fails."""
    with emulated(Emulator(defines=("-DLRB_BROKEN_ZERO_STATE=1",))):
        with pytest.raises(AssertionError, match="NaN pattern differs"):
            zero_state.check(case)


def test_case_grid_covers_the_launch_paths():
    """The grid reaches both load paths of cuda-scan, hundreds of tiles, every kernel and dtype."""
    from lrbench.scan.cuda import scan as cuda_scan

    grid = kc.cases()
    plans = [
        cuda_scan.plan(c.T, c.N, torch.float32, (torch.empty(4),), d)
        for c in grid
        for d in ("forward", "backward")
        if c.backend == "cuda-scan" and c.dt == "fp32" and not c.offset
    ]
    assert any(p.vec for p in plans) and any(not p.vec for p in plans)
    assert any(p.narrow for p in plans) and any(not p.narrow for p in plans)
    crossed = {(p.CB, p.L) for p in plans if p.n_tb > p.window + 1}
    assert {(1, 16), (1, 12), (4, 16), (8, 16), (32, 8)} <= crossed  # every look-back shape
    assert {(c.backend, c.dt) for c in grid} >= {
        ("cuda-scan", d) for d in ("fp32", "fp16", "bf16")
    } | {("cuda-serial", d) for d in kc.DTYPES} | {("cuda-paper", "fp32")}
    assert {c.T for c in grid} >= {1, 2, 31, 33, 2047, 2049, 4097}
    assert any(c.reverse for c in grid) and any(c.h0 for c in grid) and any(c.offset for c in grid)


def _scan_outputs(seed, workers, T, N):
    """(h, ga, gx, gh0) of cuda-scan, and how many times a look-back waited (__nanosleep)."""
    a, x, h0 = kc.make_inputs(T, N, torch.float32, "long", seed=5)
    from lrbench.scan.cuda import scan as cuda_scan

    em = Emulator(seed=seed, workers=workers, yield_permille=100)
    before = em.sleeps("scan")
    with emulated(em):
        h = cuda_scan.forward(a, x, h0, False)
        out = (h, *cuda_scan.backward(a, h, h0, torch.ones_like(h), False))
    return out, em.sleeps("scan") - before


@pytest.mark.parametrize("T,N", [(300 * 64 + 7, 33), (40 * 4096 + 1, 1)])
def test_scan_is_bitwise_deterministic(T, N):
    """Block order and timing change between runs, and look-backs really wait; the bits do not
    change."""
    (first, waits1), (second, waits2) = _scan_outputs(11, 4, T, N), _scan_outputs(12, 3, T, N)
    for u, v in zip(first, second):
        assert torch.equal(u, v)
    assert waits1 + waits2 > 0, "no look-back ever found a predecessor not ready"


BROKEN = [
    kc._case("cuda-scan", "fp32", kc._many_tiles(33), 33),
    kc._case("cuda-scan", "fp32", 3 * 4096 + 1, 1),
]


@pytest.mark.parametrize("case", BROKEN, ids=lambda c: c.id)
def test_broken_lookback_is_caught(case):
    """The same check on scan.cu built with one predecessor dropped from the look-back fails."""
    with emulated(Emulator(defines=("-DLRB_BROKEN_DROP_PREDECESSOR=1",))):
        with pytest.raises(AssertionError, match="max abs err"):
            kc.check(case)
    with emulated(Emulator()):
        kc.check(case)


def test_warp_operations():
    """The emulation's shuffles, ballot and __syncwarp (tests/data/emu_warp.cu) against NumPy."""
    import numpy as np
    from lrbench.scan.cuda import launch as _cupy

    n = 150
    x = torch.randint(0, 100, (n,), dtype=torch.int32, generator=torch.Generator().manual_seed(3))
    prefix, total, lane5 = (torch.full((n,), -1, dtype=torch.int32) for _ in range(3))
    odd = torch.zeros(5, dtype=torch.int32)
    Emulator().launch(
        str(HERE / "data" / "emu_warp.cu"),
        "warp_ops",
        None,
        (3,),
        (64,),
        tuple(_cupy.ptr(t) for t in (x, prefix, odd, total, lane5)) + (_cupy.i64(n),),
    )
    xs = np.zeros(160, np.int64)
    xs[:n] = x.numpy()
    w = xs.reshape(5, 32)
    assert (prefix.numpy() == np.cumsum(w, axis=1).ravel()[:n]).all()
    assert (total.numpy() == np.repeat(w.sum(axis=1), 32)[:n]).all()
    assert (lane5.numpy() == np.repeat(w[:, 5], 32)[:n]).all()
    bits = ((w & 1) << np.arange(32)).sum(axis=1).astype(np.uint32)
    assert (odd.numpy().view(np.uint32) == bits).all()


def test_wrong_argument_type_is_refused():
    """A Python int where the kernel takes an int64 (CuPy would pass it unchecked)."""
    from lrbench.scan.cuda import launch as _cupy

    em = Emulator()
    with pytest.raises(TypeError, match="argument 4 is int"):
        em.launch(
            "serial",
            "serial_forward_f32",
            None,
            (1,),
            (32,),
            (_cupy.ptr(None),) * 4 + (5, _cupy.i64(1), _cupy.i32(0)),
        )
    with pytest.raises(RuntimeError, match="refused its arguments"):
        em.launch(
            "serial",
            "serial_forward_f32",
            None,
            (1,),
            (32,),
            (_cupy.ptr(None),) * 4 + (_cupy.i32(5), _cupy.i64(1), _cupy.i32(0)),
        )


def test_sanitizer_build():
    """A subset under -fsanitize=address,undefined: out-of-bounds reads of the torch buffers,
    misaligned vector loads and signed overflow abort the run."""
    libasan = subprocess.run(
        [os.environ.get("CXX", "g++"), "-print-file-name=libasan.so"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    env = dict(
        os.environ,
        LD_PRELOAD=libasan,
        ASAN_OPTIONS="detect_leaks=0",
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
    )
    r = subprocess.run(
        [sys.executable, str(HERE / "emulation" / "cases.py"), "--sanitize"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(r.stdout, r.stderr[-4000:])
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.count("ok ") == len(kc.SANITIZE)
