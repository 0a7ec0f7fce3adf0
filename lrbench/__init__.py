"""lrbench: parallel linear recurrences ``h[t] = a[t] * h[t-1] + x[t]``, their kernels and benchmarks.

Martin & Cundy, "Parallelizing Linear Recurrent Neural Nets Over Sequence Length", ICLR 2018.
"""
from .api import auto_backend, linear_recurrence
from .registry import backends, register

__version__ = "0.1.0"
__all__ = ["linear_recurrence", "backends", "register", "auto_backend", "__version__"]
