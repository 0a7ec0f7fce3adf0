"""Sequence parallelism over ``torch.distributed``: one contiguous slice of the time axis per rank.

``linear_recurrence(a, x, h0, group=..., backend=...)`` solves ``h[t] = a[t] h[t-1] + x[t]`` over
the whole sequence, each rank of the process group holding the slice of ``a`` and ``x`` that
follows the previous rank's, and returns that rank's slice of ``h``. Only per-channel summaries
cross ranks (docs/sequence-parallel.md has the algorithm, its cost model and the measurements).
A bad call on any rank is the same one-line error on every rank, raised before any summary moves;
every collective waits at most ``lrbench.distributed.scan.TIMEOUT_S`` seconds (None, the default:
the process group's own timeout).
"""

import socket

from .scan import Traffic, linear_recurrence, linear_recurrence_with_start, traffic

__all__ = ["linear_recurrence", "linear_recurrence_with_start", "traffic", "Traffic", "free_port"]


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
