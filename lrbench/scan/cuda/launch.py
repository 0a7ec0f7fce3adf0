"""Loading and launching the CUDA kernels of ``lrbench/scan/cuda/*.cu`` through CuPy.

Sources are compiled on first use by ``lrbench.kernels.cubin`` (NVRTC, the flags of ``lrbench
kernels``, cached on disk keyed on the source and every header it includes), loaded per device
as ``cupy.RawModule(path=...)``, and launched on PyTorch's *current* stream. Tensors travel as
raw device pointers (zero-copy; the callers allocate every output with torch and keep it
alive), and every scalar is passed as the exact C type the kernel declares: CuPy checks neither.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ... import kernels

SUFFIX = {torch.float32: "f32", torch.float64: "f64", torch.float16: "f16", torch.bfloat16: "bf16"}


def unavailable() -> str | None:
    """Why the CUDA backends cannot run here, or None."""
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    try:
        import cupy  # noqa: F401
    except ImportError as e:
        return f"CuPy is not installed (pip install -e '.[gpu]'): {e}"
    try:
        from cuda.bindings import nvrtc  # noqa: F401
    except ImportError as e:
        return f"NVRTC is not installed (pip install -e '.[gpu]'): {e}"
    try:
        kernels.source("scan")
    except FileNotFoundError as e:
        return str(e)
    return None


def i64(v) -> np.int64:
    return np.int64(v)


def i32(v) -> np.int32:
    return np.int32(v)


def ptr(t: torch.Tensor | None) -> np.uint64:
    """A tensor's device pointer as the kernel's ``T*`` (8 bytes); None is a null pointer."""
    return np.uint64(0 if t is None else t.data_ptr())


def arch(device: int) -> str:
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"


@functools.cache
def _module(name: str, device: int):
    import cupy

    with cupy.cuda.Device(device):
        return cupy.RawModule(path=str(kernels.cubin(name, arch(device))))


@functools.cache
def function(name: str, entry: str, device: int):
    """Entry point ``entry`` of ``<name>.cu`` on ``device`` (compiled on first use)."""
    import cupy

    with cupy.cuda.Device(device):
        return _module(name, device).get_function(entry)


@functools.lru_cache(maxsize=64)
def _cupy_stream(handle: int, device: int):
    """CuPy's view of a torch stream (by its raw handle; cached, streams are few)."""
    import cupy

    try:
        return cupy.cuda.ExternalStream(handle, device)
    except TypeError:  # signature without the device
        return cupy.cuda.ExternalStream(handle)


def launch(name: str, entry: str, device: torch.device, grid, block, args, smem: int = 0) -> None:
    """Launch ``entry`` of ``<name>.cu`` on the current torch stream of ``device``."""
    import cupy

    index = device.index if device.index is not None else torch.cuda.current_device()
    fn = function(name, entry, index)
    stream = torch.cuda.current_stream(index)
    with cupy.cuda.Device(index), _cupy_stream(stream.cuda_stream, index):
        fn(tuple(grid), tuple(block), tuple(args), shared_mem=smem)


@functools.cache
def sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count
