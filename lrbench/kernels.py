"""The CUDA sources under ``kernels/``: where they are, and compiling them through NVRTC.

NVRTC needs no GPU and no driver, so every kernel is compiled, with ptxas's resource report, on
any machine with ``cuda-bindings`` and ``nvidia-cuda-nvrtc`` installed (the CPU CI does it).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path



def _kernels_dir() -> Path:
    """$LRBENCH_KERNELS, else the source checkout's kernels/, else asv's config folder's (a wheel
    built by ``asv run`` holds the package only; asv runs with ASV_CONF_DIR set)."""
    if os.environ.get("LRBENCH_KERNELS"):
        return Path(os.environ["LRBENCH_KERNELS"])
    here = Path(__file__).resolve().parent.parent / "kernels"
    if here.is_dir() or not os.environ.get("ASV_CONF_DIR"):
        return here
    return Path(os.environ["ASV_CONF_DIR"]) / "kernels"


KERNELS = _kernels_dir()
ARCHS = ("sm_80", "sm_90")
OPTIONS = ("-std=c++17",)


def source(name: str) -> Path:
    """``kernels/<name>.cu``; a clear error when the source tree is not at hand."""
    path = KERNELS / f"{name}.cu"
    if not path.is_file():
        raise FileNotFoundError(f"CUDA source {path} not found: the GPU backends run from a source "
                                f"checkout (pip install -e .) or with LRBENCH_KERNELS set")
    return path


def sources() -> list[Path]:
    return sorted(KERNELS.glob("*.cu"))


def include_dirs() -> list[Path]:
    """``kernels/`` and a CUDA include folder holding ``cuda_fp16.h`` (the nvidia-cuda-runtime
    wheel's, ``$CUDA_PATH`` or /usr/local/cuda)."""
    dirs = [KERNELS]
    candidates = []
    try:
        import nvidia.cu13 as cu13                  # the nvidia-cuda-runtime wheel (CUDA 13)
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


_FUNC = re.compile(r"Function properties for (\w+)\s*\n\s*ptxas\s*\.\s*(\d+) bytes stack frame, "
                   r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'.*?Used (\d+) registers"
                   r"(?:, used \d+ barriers)?(?:, (\d+) bytes smem)?", re.S)


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


def compile_report(path: Path, arch: str = "sm_90") -> tuple[list[Resources], str]:
    """Compile ``path`` to a cubin for ``arch`` with NVRTC; return ptxas's records and the raw log.

    Raises RuntimeError with NVRTC's log if compilation fails, ImportError if NVRTC is missing.
    """
    from cuda.bindings import nvrtc

    src = path.read_bytes()
    err, prog = nvrtc.nvrtcCreateProgram(src, path.name.encode(), 0, [], [])
    _check(nvrtc, err, "nvrtcCreateProgram")
    opts = [f"-arch={arch}", "-Xptxas=-v", "-lineinfo", *OPTIONS]
    opts += [f"-I{d}" for d in include_dirs()]
    opts = [o.encode() for o in opts]
    (res,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    err, size = nvrtc.nvrtcGetProgramLogSize(prog)
    buf = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, buf)
    log = buf.decode(errors="replace").rstrip("\x00 ")
    nvrtc.nvrtcDestroyProgram(prog)
    if res != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"NVRTC failed to compile {path} for {arch}:\n{log}")
    return parse_ptxas(log), log


def _check(nvrtc, err, what):
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"{what} failed: {err}")
