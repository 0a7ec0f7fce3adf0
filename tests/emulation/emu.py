"""Build ``lrbench/scan/cuda/*.cu`` with g++ against ``include/cuda_emu.h`` and launch them on the host.

``Emulator.launch`` has the signature of ``lrbench.scan.cuda.launch.launch``: patched in its place (see
``emulated``), the backends' own Python (launch plan, scratch, argument types) runs unchanged on
CPU tensors, whose data pointers the emulated kernels read and write. Every argument must be the
NumPy scalar type ``_cupy`` passes (int64, int32, uint64 pointers), and its size is checked
against the kernel's parameter, which CuPy does not do.

Builds are cached under ``$TMPDIR/lrbench-emu/<hash>``, keyed on the sources (the ``.cu``, every
``lrbench/scan/cuda/*.cuh``, this folder's headers), the flags and the compiler's version.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
INCLUDE = HERE / "include"
ROOT = HERE.parent.parent
KERNELS = ROOT / "lrbench" / "scan" / "cuda"
CXX = os.environ.get("CXX", "g++")
FLAGS = (
    "-std=c++17",
    "-O2",
    "-g",
    "-fPIC",
    "-shared",
    "-pthread",
    "-fno-strict-aliasing",
    "-fno-extern-tls-init",
    "-Wall",
    "-Wno-unused-function",
    "-Wno-unused-variable",
)
SANITIZE = (
    "-O1",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
)


class Config(ctypes.Structure):
    _fields_ = [
        ("grid", ctypes.c_uint * 3),
        ("block", ctypes.c_uint * 3),
        ("smem", ctypes.c_ulonglong),
        ("seed", ctypes.c_uint),
        ("workers", ctypes.c_int),
        ("yield_permille", ctypes.c_int),
    ]


_CTYPE = {np.int64: ctypes.c_int64, np.int32: ctypes.c_int32, np.uint64: ctypes.c_uint64}


def _entries(src: Path, defines) -> list[str]:
    """Kernel entry points of ``src``, read off its preprocessed text."""
    out = subprocess.run(
        [
            CXX,
            "-E",
            "-x",
            "c++",
            "-std=c++17",
            f"-I{INCLUDE}",
            f"-I{KERNELS}",
            "-D__global__=__lrb_global__",
            *defines,
            str(src),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pat = r'extern\s+"C"\s+__lrb_global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\('
    return sorted(set(re.findall(pat, out)))


@contextlib.contextmanager
def _locked(path: Path):
    import fcntl

    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def build(name: str, defines: tuple[str, ...] = (), sanitize: bool = False) -> Path:
    """``lrbench/scan/cuda/<name>.cu`` (or the ``.cu`` file at path ``name``) as a shared library of
    ``lrb_emu__<entry>`` launchers (cached)."""
    src = Path(name) if name.endswith(".cu") else KERNELS / f"{name}.cu"
    name = src.stem
    flags = (*FLAGS, *(SANITIZE if sanitize else ()), *defines)
    version = subprocess.run([CXX, "--version"], capture_output=True, text=True).stdout
    h = hashlib.sha256(repr((flags, version)).encode())
    for p in [src, *sorted(KERNELS.glob("*.cuh")), *sorted(INCLUDE.glob("*.h"))]:
        h.update(p.name.encode() + p.read_bytes())
    out_dir = Path(tempfile.gettempdir()) / "lrbench-emu" / f"{name}-{h.hexdigest()[:20]}"
    lib = out_dir / "lib.so"
    if lib.is_file():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    with _locked(out_dir / "lock"):
        if lib.is_file():
            return lib
        driver = out_dir / "driver.cpp"
        body = [f'#include "{src}"'] + [f"LRB_EMU_ENTRY({e})" for e in _entries(src, defines)]
        driver.write_text("\n".join(body) + "\n")
        tmp = out_dir / f"lib.{os.getpid()}.so"
        cmd = [
            CXX,
            *flags,
            "-include",
            str(INCLUDE / "cuda_emu.h"),
            f"-I{INCLUDE}",
            f"-I{KERNELS}",
            str(driver),
            "-o",
            str(tmp),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(
                f"g++ failed to build the emulation of {src}:\n{' '.join(cmd)}\n{r.stderr}"
            )
        os.replace(tmp, lib)
    return lib


class Emulator:
    """Launches kernels of emulation builds; ``seed`` shuffles block order, ``workers`` host
    threads run blocks concurrently, ``yield_permille`` makes fences give up the host thread."""

    def __init__(
        self,
        defines: tuple[str, ...] = (),
        sanitize: bool = False,
        seed: int = 1,
        workers: int = 4,
        yield_permille: int = 20,
    ):
        self.defines, self.sanitize = tuple(defines), sanitize
        self.seed, self.workers, self.yield_permille = seed, workers, yield_permille
        self.libs: dict[str, ctypes.CDLL] = {}
        self.launches: list[tuple[str, tuple, tuple, int]] = []

    def lib(self, name: str) -> ctypes.CDLL:
        if name not in self.libs:
            self.libs[name] = ctypes.CDLL(str(build(name, self.defines, self.sanitize)))
        return self.libs[name]

    def sleeps(self, name: str) -> int:
        """``__nanosleep`` calls so far: look-back waits that found a predecessor not ready."""
        f = self.lib(name).lrb_emu_sleeps
        f.restype = ctypes.c_ulonglong
        return f()

    def launch(self, name, entry, device, grid, block, args, smem: int = 0) -> None:
        fn = getattr(self.lib(name), f"lrb_emu__{entry}")
        vals = []
        for i, v in enumerate(args):
            if type(v) not in _CTYPE:
                raise TypeError(
                    f"{entry}: argument {i} is {type(v).__name__}, not one of the "
                    f"exact C types (np.int64, np.int32, np.uint64)"
                )
            vals.append(_CTYPE[type(v)](v))
        argv = (ctypes.c_void_p * len(vals))(
            *(ctypes.cast(ctypes.byref(v), ctypes.c_void_p) for v in vals)
        )
        sizes = (ctypes.c_int * len(vals))(*(ctypes.sizeof(v) for v in vals))
        grid3, block3 = (tuple(grid) + (1, 1))[:3], (tuple(block) + (1, 1))[:3]
        self.seed += 1
        cfg = Config(
            (ctypes.c_uint * 3)(*grid3),
            (ctypes.c_uint * 3)(*block3),
            smem,
            self.seed,
            self.workers,
            self.yield_permille,
        )
        self.launches.append((entry, grid3, block3, smem))
        rc = fn(ctypes.byref(cfg), argv, sizes, len(vals))
        if rc != 0:
            raise RuntimeError(
                f"emulated launch of {entry} refused its arguments (rc {rc}); see stderr"
            )


SMS = 4  # multiprocessors the emulated device reports (cuda-paper sizes its grid by it)


@contextlib.contextmanager
def emulated(emulator: Emulator):
    """Route ``lrbench.scan.cuda.launch``'s launches to ``emulator`` (CPU tensors in, CPU tensors out)."""
    from lrbench.scan.cuda import launch as _cupy

    saved = _cupy.launch, _cupy.sm_count
    _cupy.launch, _cupy.sm_count = emulator.launch, (lambda index: SMS)
    try:
        yield emulator
    finally:
        _cupy.launch, _cupy.sm_count = saved


if __name__ == "__main__":  # python tests/emulation/emu.py NAME...: build, print paths
    for n in sys.argv[1:]:
        print(build(n))
