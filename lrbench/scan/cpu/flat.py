"""Addressing of time-major ``(T, N)`` buffers in processing order, for the Numba kernels.

A scan runs over positions ``p = 0 .. T-1``; position p is time ``p`` (or ``T-1-p`` when reversed).
An operand is its flat buffer plus the offset of position 0; all share the row stride ``rs``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Order(NamedTuple):
    """Made on every call, so a named tuple (cheaper to make than a frozen dataclass)."""

    T: int
    N: int
    reverse: bool

    @property
    def rs(self) -> int:
        return -self.N if self.reverse else self.N

    def base(self, p: int = 0) -> int:
        """Flat offset of position p."""
        return (self.T - 1 - p) * self.N if self.reverse else p * self.N

    def row(self, buf: np.ndarray, p: int) -> np.ndarray:
        b = self.base(p)
        return buf[b : b + self.N]


def flat(t) -> np.ndarray:
    """The flat NumPy view of a contiguous CPU tensor (shares memory). ``detach`` only where
    needed: it costs 0.3 of this function's 1 us a call."""
    return (t.detach() if t.requires_grad else t).numpy().ravel()
