"""The backend registry: every implementation of the scan, by name, with why it may be unavailable.

A backend module exposes ``forward(a, x, h0, reverse) -> h`` and
``backward(a, h, h0, gh, reverse) -> (ga, gx, gh0)`` on time-major ``(T, N)`` contiguous tensors,
``DTYPES`` (supported dtypes), ``DEVICES`` (device types, or None for any), optionally
``check(a, x, h0)`` for value constraints and ``UNAVAILABLE`` (a reason, or None). The GPU
backends register themselves here the same way.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    name: str
    module: str
    summary: str

    def load(self):
        """The backend's module; raises RuntimeError naming the reason when unavailable. Imported
        once per process; later calls are a dictionary lookup."""
        return _load(self.name, self.module)

    def availability(self) -> tuple[bool, str]:
        try:
            self.load()
        except RuntimeError as e:
            return False, str(e).split(": ", 1)[-1]
        return True, ""


@functools.cache
def _load(name: str, module: str):
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise RuntimeError(f"backend {name!r} is unavailable: {e}") from e
    reason = getattr(mod, "UNAVAILABLE", None)
    if reason:
        raise RuntimeError(f"backend {name!r} is unavailable: {reason}")
    return mod


_REGISTRY: dict[str, Backend] = {}


def register(name: str, module: str, summary: str) -> None:
    _REGISTRY[name] = Backend(name, module, summary)


def get(name: str) -> Backend:
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose 'auto' or one of {sorted(_REGISTRY)}")
    return _REGISTRY[name]


@functools.cache
def available(name: str) -> bool:
    """Whether backend ``name`` loads here (cached: the answer does not change within a process)."""
    return get(name).availability()[0]


def names() -> list[str]:
    return list(_REGISTRY)


def backends() -> list[dict]:
    """Every registered backend: name, summary, whether it is available here and if not, why."""
    out = []
    for b in _REGISTRY.values():
        ok, why = b.availability()
        out.append({"name": b.name, "available": ok, "reason": why, "summary": b.summary})
    return out


_P = "lrbench.scan."
register("reference", "lrbench.reference", "float64 serial loop in NumPy; the ground truth")
register("torch-loop", _P + "torch_loop", "naive PyTorch loop over T (any device)")
register("cpu-serial", _P + "cpu.serial", "compiled (Numba) serial scan, vectorised over channels")
register("cpu-chunked", _P + "cpu.chunked", "paper's Algorithm 1 on CPU cores (helper threads)")
register("torch-assoc", _P + "torch_assoc", "torch's generic associative_scan (eager)")
register("log-space", _P + "log_space", "Heinsen's logcumsumexp trick; needs a > 0")
register("cuda-serial", _P + "cuda.serial", "serial CUDA loop, a thread per channel (paper's SLR)")
register("cuda-paper", _P + "cuda.paper", "port of the paper's three-kernel CUDA scan (Table 1)")
register("cuda-scan", _P + "cuda.scan", "single-pass tiled CUDA scan with decoupled look-back")
register("triton-scan", _P + "triton_scan", "Triton associative_scan over chunks, carried prefix")
