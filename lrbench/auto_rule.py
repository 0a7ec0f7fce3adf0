"""``auto``'s CPU rule: for T positions of N channels, cpu-chunked or cpu-serial.

**Measured machines.** ``auto_cpu.json`` holds, per machine (``lrbench machine``) whose asv suite
ran ``bench_cpu.CPUGrid``, the shortest T per measured N from which cpu-chunked beat cpu-serial
(at that T and every longer one measured); a call uses the row of the measured N nearest its own
(in log2). ``lrbench auto-table`` writes this machine's entry (``lrbench.auto_table``).

**Any other machine** gets a rule derived from its own facts (``lrbench.hwfacts``: copy bandwidth
on one thread and on P, bw1 and bwP; the hand-off h of cpu-chunked's threads; the one-core chain
latency l per element; the compute scale c of P cores), measured once and cached, never from
another machine's table: a table carries its machine's bandwidth, and another machine's cores may
not add any. On intel-xeon-2c two threads copy 1.8x as fast as one, and the pipeline beat
cpu-serial 1.33-1.50x at 4M-16M elements (CPUGrid, f143a5fb); on amd-epyc-2c two threads scale
compute 1.96x but copy at 0.81x one thread, and the Xeon table made ``auto`` pick cpu-chunked at
0.58-0.61 of the fastest (T = 2^20; N = 16 and 1).

The model, in seconds per element of fp32 (s = 4 bytes), n = T * N elements:

* cpu-serial, the pipeline's N: ``sigma = 3 s / bw1`` (it streams a, x and h at about one core's
  copy bandwidth: 0.86 of it on intel-xeon-2c). The chains' N: ``sigma = max(lN, 3 s / bw1)``,
  ``lN = l / max(1, N / 2)``: one latency-bound chain per channel, N / 2 of them overlapping
  (1.61 / 1.57 / 0.86 ns per element at N = 1 / 2 / 4, T = 2^20, intel-xeon-2c).
* cpu-chunked, pipeline (N a multiple of 8, or N >= 16): each of the P cores moves 5 L streams
  (core 0 scans chunk 0, 2/3 L, and chunk 1; every other core reduces a chunk, 2 streams, and
  scans the next, 3), so the data moves ``5 P / (P + 2/3)`` times (3.75 at P = 2) where
  cpu-serial moves it 3 times: ``kappa = max(5 P / (P + 2/3) s / bwP, sigma / c)``. At length the
  speedup is ``(bwP / bw1) x 3 / 3.75`` at P = 2: 0.8 x 1.8 = 1.44 on intel-xeon-2c (measured
  1.33-1.50), 0.8 x 0.81 = 0.65 on amd-epyc-2c (measured 0.58-0.61).
* cpu-chunked, chains (every other N below 16): each core reduces its chains and re-scans them,
  the chain's compute shared by the cores, ``kappa = max(lN / c, 3 s / bwP)``. The re-scan reads
  a and x again right after the reduce, from cache near the threshold (a few MB): at N = 4, T =
  2^20 on intel-xeon-2c it beat cpu-serial 1.67x, where counting 5 streams from memory predicts
  1.03. ``lN / c`` is pessimistic: a core interleaves 8 chains (N = 1 ran at 0.65 ns per element
  on 2 cores against the 0.85 it predicts).
* Per tile cpu-chunked also pays thread wake-ups: the pipeline 2 h (its hand-off, and the carry
  handed from core to core), the chains 3 h (two hand-offs, and the carries between them in
  Python). CPUGrid's short rows on intel-xeon-2c cost cpu-chunked 136-170 us (pipeline) and
  225-231 us (chains) more than cpu-serial, against an empty hand-off of about 85 us.

cpu-chunked is chosen where the predicted speedup ``n sigma / (k h + n kappa)`` is at least
``R = MIN_SPEEDUP x MARGIN`` = 1.1 x 1.15, i.e. from ``n >= k h R / (sigma - R kappa)``; never where
``sigma <= R kappa``, where that n is past one tile (``TILE_BYTES`` per operand: every tile pays
its wake-ups again), where P = 1, and never for the pipeline where P threads copy no faster than
one (``bwP <= bw1``). The margin covers caches, which the model ignores: at 1M elements (12 MB)
cpu-serial ran at 0.47-0.55 ns per element on intel-xeon-2c, not the 0.89 of its copy bandwidth,
and cpu-chunked measured 0.83-0.85 of it where the model says 1.13; with the margin the
pipeline's threshold there is about 2M elements (measured 1.33 at 4M).

``chunked_wins(T, N)`` runs on every CPU call of ``auto``: the machine's rule is read (or its facts
measured, or read from their cache) on the first call, and each N's threshold is cached; no file
IO or measuring after that.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import torch

TABLE = Path(__file__).with_name("auto_cpu.json")
BENCHMARK = "bench_cpu.CPUGrid.time_scan"
NS = (1, 2, 4, 8, 16, 64, 256, 4096)  # the N of CPUGrid: where a derived table is shown

# cpu-chunked's own constants (lrbench/scan/cpu/chunked.py, chains.W), repeated so that
# deriving a rule imports no Numba; tests/test_auto_facts.py checks they agree.
W, CHAINS_BELOW, HEAD, TILE_BYTES = 8, 16, 2 / 3, 64 << 20
ITEMSIZE = 4  # fp32, as CPUGrid measures
WAKEUPS = {"pipeline": 2, "chains": 3}  # per tile, in units of the measured hand-off
MIN_SPEEDUP, MARGIN = 1.1, 1.15


def pipelined(N: int) -> bool:
    return N % W == 0 or N >= CHAINS_BELOW


def _costs(facts: dict, N: int, P: int, s: int) -> tuple[float, float, float]:
    """(sigma, kappa, overhead): cpu-serial's and cpu-chunked's seconds per element, and
    cpu-chunked's seconds per tile, as the module docstring models them."""
    bw1, bwP = facts["copy1_GBps"] * 1e9, facts["copyP_GBps"] * 1e9
    h, lat, c = (
        facts["handoff_us"] * 1e-6,
        facts["chain_ns"] * 1e-9,
        max(facts["compute_scale"], 1e-9),
    )
    if pipelined(N):
        sigma = 3 * s / bw1
        return sigma, max(5 * P / (P + HEAD) * s / bwP, sigma / c), WAKEUPS["pipeline"] * h
    chain = lat / max(1.0, N / 2)
    return max(chain, 3 * s / bw1), max(chain / c, 3 * s / bwP), WAKEUPS["chains"] * h


def derive(facts: dict, N: int, threads: int, itemsize: int = ITEMSIZE) -> int | None:
    """The shortest T from which the model predicts cpu-chunked at least ``MIN_SPEEDUP`` x
    ``MARGIN`` as fast as cpu-serial for N channels, from a machine's ``hwfacts`` (None: never)."""
    if threads < 2 or (pipelined(N) and facts["copyP_GBps"] <= facts["copy1_GBps"]):
        return None  # one core, or the cores add no bandwidth
    sigma, kappa, overhead = _costs(facts, N, threads, itemsize)
    R = MIN_SPEEDUP * MARGIN
    if sigma <= R * kappa:
        return None
    n = math.ceil(overhead * R / (sigma - R * kappa))
    if n * itemsize > TILE_BYTES:  # past one tile: every tile pays again
        return None
    return max(1, math.ceil(n / N))


def speedup(facts: dict, T: int, N: int, threads: int, itemsize: int = ITEMSIZE) -> float:
    """The model's cpu-serial time over cpu-chunked's at (T, N), within one tile."""
    if threads < 2:
        return 1.0
    sigma, kappa, overhead = _costs(facts, N, threads, itemsize)
    return T * N * sigma / (overhead + T * N * kappa)


def machines(path: Path | None = None) -> dict:
    """The measured tables by machine (a file of the older one-machine shape reads as its machine)."""
    spec = json.loads(Path(path or TABLE).read_text())
    if "machines" in spec:
        return spec["machines"]
    return {spec["machine"]: {k: spec[k] for k in ("chunked_from_T", "commits") if k in spec}}


@functools.cache
def _machines() -> dict:
    return machines()


@functools.cache
def _machine() -> str:
    from . import machine

    return machine.name()


@functools.cache
def rule() -> tuple[str, dict]:
    """This machine's rule: ("table", {N: T or None}) from ``auto_cpu.json``, or ("facts", its
    facts document) where it has no entry (measured now if not cached), or ("none", {}) where
    measuring failed (a warning; cpu-serial always)."""
    name = _machine()
    entry = _machines().get(name)
    if entry is not None:
        return "table", {int(N): T for N, T in entry["chunked_from_T"].items()}
    from . import hwfacts

    try:
        return "facts", hwfacts.facts(name)
    except Exception as e:  # noqa: BLE001 - a choice of backend must not fail a call
        import warnings

        warnings.warn(
            f"lrbench: auto could not measure this machine ({name}) to choose between "
            f"cpu-serial and cpu-chunked ({type(e).__name__}: {e}); it uses cpu-serial",
            RuntimeWarning,
            stacklevel=2,
        )
        return "none", {}


@functools.cache
def _start(N: int) -> int | None:
    """The shortest T from which cpu-chunked is chosen for N channels (None: never)."""
    kind, data = rule()
    if kind == "facts":
        return derive(data["facts"], N, data["threads"])
    if kind == "none":
        return None
    return data[min(data, key=lambda m: (abs(math.log2(m) - math.log2(max(N, 1))), m))]


def chunked_wins(T: int, N: int) -> bool:
    """Whether cpu-chunked is chosen at (T, N): never on one thread (``set_num_threads(1)``)."""
    start = _start(N)
    return start is not None and T >= start and torch.get_num_threads() > 1


def reset() -> None:
    """Forget the cached rule (after ``auto_cpu.json`` or the facts changed; tests)."""
    for f in (_machines, _machine, rule, _start):
        getattr(f, "cache_clear", lambda: None)()  # a test may have replaced one
