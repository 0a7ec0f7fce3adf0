"""``torch-assoc``: torch's generic associative scan (``torch._higher_order_ops``) in eager mode.

The pair operator ``(a1, x1) then (a2, x2) = (a2 a1, a2 x1 + x2)``; ``h0`` enters as ``x[0] + a[0] h0``.
What a user reaching for a library primitive would pick. Backward: the same scan, reversed, over the
shifted gates.
"""
from __future__ import annotations

import torch

from ._common import backward_by_reverse_scan, into

DTYPES = (torch.float32, torch.float64)
DEVICES = None  # any

try:
    from torch._higher_order_ops.associative_scan import associative_scan
except ImportError as e:  # pragma: no cover - depends on the torch build
    associative_scan = None
    UNAVAILABLE = f"torch {torch.__version__} has no associative_scan ({e})"
else:
    UNAVAILABLE = None


def _combine(left, right):
    """A state that is exactly 0 contributes exactly 0: the right segment's own scan (from 0) is the
    serial loop's answer there, even when the right segment's gate product has overflowed (inf * 0
    would make it NaN). NaN or Inf gates still poison x2, which was scanned from 0."""
    a1, x1 = left
    a2, x2 = right
    return a2 * a1, torch.where(x1 == 0, x2, a2 * x1 + x2)


def forward(a, x, h0, reverse, out=None):
    if h0 is not None:
        first = -1 if reverse else 0
        x = x.clone()
        x[first] = x[first] + a[first] * h0
    _, h = associative_scan(_combine, (a, x), dim=0, reverse=reverse, combine_mode="generic")
    return into(h.contiguous(), out)


def backward(a, h, h0, gh, reverse):
    return backward_by_reverse_scan(forward, a, h, h0, gh, reverse)
