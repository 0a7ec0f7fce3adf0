"""``lrbench perfcheck``: the CI performance gate, robust to a noisy 2-core machine.

Every check times the public ``linear_recurrence`` (into a preallocated ``out=``, torch's default
threads: what a user runs) against a reference timed back to back in the same process, so a slow
or busy machine slows both; each is measured several times and the best trial counts, because
noise only ever makes a ratio worse. The thresholds live in ``benchmarks/perf_thresholds.json``,
with the value measured when they were set; a real regression (a kernel made 2x slower, a lost
thread, a spinning thread pool) falls far below.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .api import linear_recurrence
from .timing import inputs, median_time

THRESHOLDS = Path(__file__).resolve().parent.parent / "benchmarks" / "perf_thresholds.json"


def _scan_seconds(backend: str, T: int, N: int, reverse: bool = False) -> float:
    a, x = inputs(T, N)
    h = torch.empty_like(x)
    with torch.no_grad():
        return median_time(lambda: linear_recurrence(a, x, backend=backend, reverse=reverse, out=h))


def serial_vs_copy() -> float:
    """cpu-serial bandwidth (12 B per element) over a one-core copy's (np.copyto), T = 2^16, N = 256."""
    T, N = 1 << 16, 256
    src = np.ones(6 * T * N // 4, np.float32)            # copied, it moves 12 T N bytes like the scan
    dst = np.empty_like(src)
    return median_time(lambda: np.copyto(dst, src)) / _scan_seconds("cpu-serial", T, N)


def chunked_vs_serial() -> float:
    """cpu-chunked speedup over cpu-serial at N = 1, T = 2^22 (the latency-bound regime)."""
    return _scan_seconds("cpu-serial", 1 << 22, 1) / _scan_seconds("cpu-chunked", 1 << 22, 1)


def pipeline_vs_serial() -> float:
    """cpu-chunked speedup over cpu-serial at N = 8, T = 2^19 (bandwidth-bound: the pipeline)."""
    return _scan_seconds("cpu-serial", 1 << 19, 8) / _scan_seconds("cpu-chunked", 1 << 19, 8)


def reverse_vs_forward() -> float:
    """cpu-serial forward time over reverse time at N = 256, T = 2^16 (1 = no penalty)."""
    return _scan_seconds("cpu-serial", 1 << 16, 256) / _scan_seconds("cpu-serial", 1 << 16, 256, True)


CHECKS = {"serial_vs_copy": serial_vs_copy, "chunked_vs_serial": chunked_vs_serial,
          "pipeline_vs_serial": pipeline_vs_serial, "reverse_vs_forward": reverse_vs_forward}


def run(thresholds: Path = THRESHOLDS, trials: int = 3) -> tuple[bool, list[dict]]:
    spec = json.loads(Path(thresholds).read_text())
    rows, ok = [], True
    for name, want in spec["checks"].items():
        if name not in CHECKS:
            raise KeyError(f"{thresholds}: unknown check {name!r}; known: {sorted(CHECKS)}")
        best = max(CHECKS[name]() for _ in range(trials))
        passed = best >= want["min"]
        ok &= passed
        rows.append(dict(check=name, measured=best, min=want["min"], set_at=want.get("measured"),
                         passed=passed, what=CHECKS[name].__doc__.strip()))
    return ok, rows


def main(thresholds: Path = THRESHOLDS) -> int:
    ok, rows = run(thresholds)
    for r in rows:
        mark = "ok  " if r["passed"] else "FAIL"
        print(f"{mark} {r['check']:18s} {r['measured']:6.2f} (min {r['min']:.2f}, "
              f"{r['set_at']} when set)  {r['what']}")
    print("performance gate:", "passed" if ok else "FAILED (a backend got slower; see above)")
    return 0 if ok else 1
