"""``lrbench.set_num_threads``: the one thread knob of lrbench's CPU backends."""

from __future__ import annotations

import torch


def set_num_threads(n: int) -> None:
    """Use ``n`` cores: torch's intra-op threads and cpu-chunked's (which follows
    ``torch.get_num_threads()``); the same as ``torch.set_num_threads(n)``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"argument 'n' must be a positive int (cores); got {n!r}")
    torch.set_num_threads(n)
