"""lrbench: parallel linear recurrences ``h[t] = a[t] * h[t-1] + x[t]``, their kernels and benchmarks.

Martin & Cundy, "Parallelizing Linear Recurrent Neural Nets Over Sequence Length", ICLR 2018.

Everything is loaded on first use (``lrbench.linear_recurrence``, ``lrbench.models``,
``lrbench.distributed``, ...), so ``import lrbench`` and ``lrbench --help`` do not import torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = [
    "linear_recurrence",
    "backends",
    "register",
    "auto_backend",
    "set_num_threads",
    "__version__",
]

_NAMES = {
    "linear_recurrence": "api",
    "auto_backend": "api",
    "backends": "registry",
    "register": "registry",
    "set_num_threads": "threads",
}
_MODULES = {
    "models",
    "distributed",
    "memory",
    "packed",
    "report",
    "perfcheck",
    "kernels",
    "machine",
    "checkpoint",
    "train",
    "op",
    "scan",
    "registry",
    "api",
    "threads",
}


def __getattr__(name: str):
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'lrbench' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_NAMES, *_MODULES})
