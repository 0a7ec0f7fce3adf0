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
    """Pairs (A, X) with F, the segment's first gate. A state of exactly 0 entering a segment whose
    first gate is finite contributes exactly 0, so the segment's own scan from 0 is the serial
    loop's answer there, even when its gate product overflowed (inf * 0 would make it NaN). A
    non-finite first gate times that 0 is NaN in the serial loop, and stays NaN here (and in X,
    which carries it past a product kept at 0 by a gate of 0)."""
    a1, x1, f1 = left
    a2, x2, f2 = right
    keep = (x1 == 0) & torch.isfinite(f2)
    reset = a1 == 0  # after a gate of 0 the product stays 0, even if later ones overflow
    return torch.where(reset, a1, a2 * a1), torch.where(keep, x2, a2 * x1 + x2), f1


def forward(a, x, h0, reverse, out=None):
    first = -1 if reverse else 0  # h0 (or 0) enters as x[first] + a[first] h0,
    x = x.clone()  # so a NaN or inf first gate gives NaN, as serially
    x[first] = x[first] + a[first] * (h0 if h0 is not None else torch.zeros_like(x[first]))
    _, h, _ = associative_scan(_combine, (a, x, a), dim=0, reverse=reverse, combine_mode="generic")
    return into(h.contiguous(), out)


def backward(a, h, h0, gh, reverse):
    return backward_by_reverse_scan(forward, a, h, h0, gh, reverse)
