"""The kernel cases, shared by the CPU emulation (tests/test_emulation.py) and the GPU
(tests/test_gpu.py, stage (a) of benchmarks/gpu.sh): each runs one backend module's ``forward``
and fused ``backward`` on one shape and compares h, dx, da and dh0 with the float64 reference.

``python tests/emulation/cases.py --sanitize`` runs the sanitizer subset under an
``-fsanitize=address,undefined`` build; it must be started with libasan preloaded
(tests/test_emulation.py does that). ``--gpu`` runs that subset on the device, for
compute-sanitizer (benchmarks/gpu.sh).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

if __name__ == "__main__":
    sys.path[:0] = [
        str(Path(__file__).resolve().parents[1]),
        str(Path(__file__).resolve().parents[2]),
    ]

from conftest import TOL, assert_close, make_inputs  # noqa: E402
from lrbench import reference  # noqa: E402
from lrbench.scan.cuda import paper as cuda_paper  # noqa: E402
from lrbench.scan.cuda import scan as cuda_scan  # noqa: E402
from lrbench.scan.cuda import serial as cuda_serial  # noqa: E402

MODULES = {"cuda-serial": cuda_serial, "cuda-paper": cuda_paper, "cuda-scan": cuda_scan}
DTYPES = {
    "fp32": torch.float32,
    "fp64": torch.float64,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


@dataclass(frozen=True)
class Case:
    backend: str
    dt: str
    T: int
    N: int
    h0: bool
    reverse: bool
    offset: int = 0  # elements before the data in its buffer: 1 misaligns the 16-byte vectors

    @property
    def id(self) -> str:
        off = f"-off{self.offset}" if self.offset else ""
        return (
            f"{self.backend}-{self.dt}-T{self.T}-N{self.N}-h0{int(self.h0)}"
            f"-rev{int(self.reverse)}{off}"
        )


def _case(backend, dt, T, N, offset=0):
    """h0 and reverse alternate with the shape, so both appear across a grid."""
    return Case(backend, dt, T, N, (T + N) % 2 == 0, (T // 2 + N) % 2 == 1, offset)


def _plan(N: int):
    """cuda-scan's forward plan at N channels (fp32)."""
    return cuda_scan.plan(1, N, torch.float32, ())


def _rows(N: int) -> int:
    """Time steps per cuda-scan forward tile at N channels."""
    return _plan(N).rows


def _many_tiles(N: int) -> int:
    """A T whose forward tiles outnumber the look-back window, so its base is not tile 0."""
    return (_plan(N).window + 3) * _rows(N) + 5


def cases() -> list[Case]:
    out = []
    # cuda-scan: T = 1, 2^k +- 1, tiles cut at both ends; N = 1, not a multiple of the vector
    # width (3, 33, 100: scalar path), a multiple (4, 32: vector path).
    for T in (1, 2, 31, 33, 1000, 2047, 2049, 4097):
        for N in (1, 3, 4, 32, 33, 100):
            out.append(_case("cuda-scan", "fp32", T, N))
    # Hundreds of tiles: the look-back window is crossed.
    for N in (1, 4, 8, 33):
        for T in (_many_tiles(N), 40 * _rows(N)):
            out.append(_case("cuda-scan", "fp32", T, N))
    out.append(_case("cuda-scan", "fp32", 1000, 8, offset=1))  # aligned shape, misaligned data
    out.append(_case("cuda-scan", "fp32", 4097, 32, offset=4))  # aligned again after 4
    for dt in ("fp16", "bf16"):
        for T, N in ((1, 1), (1025, 8), (4097, 3), (40 * _rows(16) + 3, 16)):
            out.append(_case("cuda-scan", dt, T, N))
    out.append(_case("cuda-scan", "fp64", 1025, 3))  # dispatched to the serial kernel
    for dt in DTYPES:
        for T, N in ((1, 1), (33, 5), (1000, 300)):
            out.append(_case("cuda-serial", dt, T, N))
    for T in (1, 2, 31, 33, 1000, 4097, 65537):
        for N in (1, 33):
            out.append(_case("cuda-paper", "fp32", T, N))
    return out


# One small case per kernel and load path: the sanitizer build runs these.
SANITIZE = [
    _case("cuda-scan", "fp32", 4097, 33),
    _case("cuda-scan", "fp32", 2049, 4),
    _case("cuda-scan", "fp32", 1000, 8, offset=1),
    _case("cuda-scan", "bf16", 1025, 8),
    _case("cuda-serial", "fp64", 33, 5),
    _case("cuda-serial", "fp16", 33, 5),
    _case("cuda-paper", "fp32", 1000, 33),
]


def _placed(t, offset, device):
    """``t`` copied to ``device``, starting ``offset`` elements into a fresh buffer."""
    if t is None:
        return None
    buf = torch.empty(t.numel() + offset, dtype=t.dtype, device=device)
    out = buf[offset:].view(t.shape)
    out.copy_(t)
    return out


def run(case: Case, device: str = "cpu"):
    """Outputs and float64 references: [(name, out, ref, tol)]."""
    dtype = DTYPES[case.dt]
    gates = "long" if case.T > 4096 else "sigmoid"
    a, x, h0 = make_inputs(case.T, case.N, dtype, gates, seed=case.T + 3 * case.N, h0=case.h0)
    gh = torch.randn(
        case.T, case.N, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    ).to(dtype)
    mod = MODULES[case.backend]
    a_, x_, h0_, gh_ = (_placed(t, case.offset, device) for t in (a, x, h0, gh))
    h = mod.forward(a_, x_, h0_, case.reverse)
    ga, gx, gh0 = mod.backward(a_, h, h0_, gh_, case.reverse)
    d = lambda t: None if t is None else t.double()
    ref = reference.forward64(a, x, h0, case.reverse)
    rga, rgx, rgh0 = reference.backward(d(a), torch.from_numpy(ref), d(h0), d(gh), case.reverse)
    out = [("h", h, torch.from_numpy(ref)), ("dx", gx, rgx), ("da", ga, rga)]
    if case.h0:
        out.append(("dh0", gh0, rgh0))
    else:
        assert gh0 is None
    return out


def check(case: Case, device: str = "cpu") -> None:
    for name, out, ref in run(case, device):
        assert out.dtype == DTYPES[case.dt] and out.shape == ref.shape, name
        assert_close(name, out.cpu(), ref, **TOL[DTYPES[case.dt]])


if __name__ == "__main__":
    # --sanitize: the subset under the ASan/UBSan emulation build (libasan preloaded);
    # --gpu: the same subset on the device (benchmarks/gpu.sh runs it under compute-sanitizer).
    mode = sys.argv[1:]
    if mode not in (["--sanitize"], ["--gpu"]):
        sys.exit("usage: cases.py --sanitize | --gpu")
    if mode == ["--sanitize"]:
        from emulation.emu import Emulator, emulated

        ctx, device = emulated(Emulator(sanitize=True, workers=3)), "cpu"
    else:
        import contextlib

        ctx, device = contextlib.nullcontext(), "cuda"
    with ctx:
        for c in SANITIZE:
            check(c, device)
            print("ok", c.id, flush=True)
