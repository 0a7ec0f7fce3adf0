"""The CUDA sources (``lrbench/scan/cuda/*.cu``, package data beside their launchers): where they
are, and compiling them through NVRTC.

NVRTC needs no GPU and no driver, so every kernel is compiled, with ptxas's resource report, on
any machine with ``cuda-bindings`` and ``nvidia-cuda-nvrtc`` installed (the CPU CI does it).
The GPU backends run the cubins ``cubin`` makes here, with the same ``OPTIONS`` as the report
(CuPy's own compile path would add ``-ftz=true`` and key its cache on the ``.cu`` text alone).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import atomic


def _kernels_dir() -> Path:
    """$LRBENCH_KERNELS (a folder of edited sources), else the package's own: a wheel holds them."""
    if os.environ.get("LRBENCH_KERNELS"):
        return Path(os.environ["LRBENCH_KERNELS"])
    return Path(__file__).resolve().parent / "scan" / "cuda"


KERNELS = _kernels_dir()
ARCHS = ("sm_80", "sm_90")
# The one set of flags, for `lrbench kernels` and for the cubins the backends run. IEEE fp32:
# denormals kept (no flush to zero), division and square root correctly rounded.
OPTIONS = ("-std=c++17", "-ftz=false", "-prec-div=true", "-prec-sqrt=true", "-lineinfo")


def source(name: str) -> Path:
    """``<KERNELS>/<name>.cu``; a clear error when it is missing."""
    path = KERNELS / f"{name}.cu"
    if not path.is_file():
        raise FileNotFoundError(
            f"CUDA source {path} not found (the package ships its kernels in "
            f"lrbench/scan/cuda/; LRBENCH_KERNELS={os.environ.get('LRBENCH_KERNELS')})"
        )
    return path


def sources() -> list[Path]:
    return sorted(KERNELS.glob("*.cu"))


def include_dirs() -> list[Path]:
    """The kernels' folder and a CUDA include folder holding ``cuda_fp16.h`` (the nvidia-cuda-runtime
    wheel's, ``$CUDA_PATH`` or /usr/local/cuda)."""
    dirs = [KERNELS]
    candidates = []
    try:
        import nvidia.cu13 as cu13  # the nvidia-cuda-runtime wheel (CUDA 13)

        candidates += [Path(p) / "include" for p in cu13.__path__]
    except ImportError:
        pass
    for env in ("CUDA_PATH", "CUDA_HOME"):
        if os.environ.get(env):
            candidates.append(Path(os.environ[env]) / "include")
    candidates.append(Path("/usr/local/cuda/include"))
    for c in candidates:
        if (c / "cuda_fp16.h").is_file():
            dirs.append(c)
            break
    return dirs


@dataclass(frozen=True)
class Resources:
    """ptxas's report for one entry function."""

    function: str
    arch: str
    registers: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int
    smem_bytes: int


_FUNC = re.compile(
    r"Function properties for (\w+)\s*\n\s*ptxas\s*\.\s*(\d+) bytes stack frame, "
    r"(\d+) bytes spill stores, (\d+) bytes spill loads"
)
_USED = re.compile(
    r"Compiling entry function '(\w+)' for '(\w+)'.*?Used (\d+) registers"
    r"(?:, used \d+ barriers)?(?:, (\d+) bytes smem)?",
    re.S,
)


def parse_ptxas(log: str) -> list[Resources]:
    """Parse ``-Xptxas=-v`` output into one record per entry function."""
    props = {m.group(1): tuple(int(g) for g in m.groups()[1:]) for m in _FUNC.finditer(log)}
    out = []
    for block in re.split(r"(?=ptxas info\s*: Compiling entry function)", log):
        m = _USED.search(block)
        if not m:
            continue
        name, arch, regs, smem = m.group(1), m.group(2), int(m.group(3)), int(m.group(4) or 0)
        stack, st, ld = props.get(name, (0, 0, 0))
        out.append(Resources(name, arch, regs, stack, st, ld, smem))
    return out


def includes(path: Path) -> list[Path]:
    """``path`` and every local header it includes (``#include "..."``, recursively)."""
    out, todo = [], [path]
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.append(p)
        for inc in re.findall(r'^\s*#\s*include\s*"([^"]+)"', p.read_text(), re.M):
            if (p.parent / inc).is_file():
                todo.append(p.parent / inc)
    return out


def compile_cubin(path: Path, arch: str = "sm_90") -> tuple[bytes, str]:
    """Compile ``path`` to a cubin for ``arch`` with NVRTC and ``OPTIONS``; return it and the log
    (ptxas's report included). RuntimeError with NVRTC's log if compilation fails."""
    from cuda.bindings import nvrtc

    src = path.read_bytes()
    err, prog = nvrtc.nvrtcCreateProgram(src, path.name.encode(), 0, [], [])
    _check(nvrtc, err, "nvrtcCreateProgram")
    opts = [f"-arch={arch}", "-Xptxas=-v", *OPTIONS]
    opts += [f"-I{d}" for d in include_dirs()]
    opts = [o.encode() for o in opts]
    (res,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    err, size = nvrtc.nvrtcGetProgramLogSize(prog)
    buf = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, buf)
    log = buf.decode(errors="replace").rstrip("\x00 ")
    cubin = b""
    if res == nvrtc.nvrtcResult.NVRTC_SUCCESS:
        err, size = nvrtc.nvrtcGetCUBINSize(prog)
        _check(nvrtc, err, "nvrtcGetCUBINSize")
        cubin = b" " * size
        (err,) = nvrtc.nvrtcGetCUBIN(prog, cubin)
        _check(nvrtc, err, "nvrtcGetCUBIN")
    nvrtc.nvrtcDestroyProgram(prog)
    if res != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"NVRTC failed to compile {path} for {arch}:\n{log}")
    return cubin, log


def compile_report(path: Path, arch: str = "sm_90") -> tuple[list[Resources], str]:
    """Compile ``path`` for ``arch`` as the backends do; return ptxas's records and the raw log.

    Raises RuntimeError with NVRTC's log if compilation fails, ImportError if NVRTC is missing.
    """
    _, log = compile_cubin(path, arch)
    return parse_ptxas(log), log


def cache_key(path: Path, arch: str) -> str:
    """Hash of everything a cubin depends on: the source and its local headers, the options, the
    CUDA headers' folder, the arch and NVRTC's version."""
    from cuda.bindings import nvrtc

    h = hashlib.sha256(
        repr((arch, OPTIONS, [str(d) for d in include_dirs()[1:]], nvrtc.nvrtcVersion())).encode()
    )
    for p in includes(path):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:24]


def cache_dir() -> Path:
    return Path(os.environ.get("LRBENCH_CACHE", Path.home() / ".cache" / "lrbench")) / "cubin"


def cubin(name: str, arch: str) -> Path:
    """``<name>.cu`` compiled for ``arch``: a cached cubin file (keyed by ``cache_key``)."""
    path = source(name)
    out = cache_dir() / f"{name}-{arch}-{cache_key(path, arch)}.cubin"
    if not out.is_file():
        data, _ = compile_cubin(path, arch)
        atomic.write(out, lambda f: f.write(data))
    return out


def _check(nvrtc, err, what):
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"{what} failed: {err}")
