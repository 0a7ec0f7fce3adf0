"""What this machine's cores do together: the facts ``auto`` derives its CPU rule from on a
machine that ``lrbench/auto_cpu.json`` has no measured entry for (``lrbench.auto_rule``).

Five numbers, measured in well under a second (plus compiling cpu-serial's N = 1 kernel where
Numba has not cached it) by :func:`measure`:

* ``copy1_GBps``: a copy of ``COPY_BYTES`` by ``np.copyto`` on one thread, bytes read + written
  per second (64 MiB each way: past any CPU's cache).
* ``copyP_GBps``: the same copy cut into P parts run at once on cpu-chunked's own threads
  (``scan.cpu.threads.run``; the Numba kernels release the GIL, and so does ``np.copyto``), P =
  ``torch.get_num_threads()``. Its ratio to ``copy1_GBps`` is what P cores add in bandwidth.
* ``handoff_us``: ``scan.cpu.threads.run`` with P empty tasks, after a pause (helpers asleep, as
  between calls); the lower quartile of ``HANDOFF_ROUNDS`` (85 us on intel-xeon-2c when quiet,
  the median 239 us at a load of 1.2 per core).
* ``chain_ns``: cpu-serial's N = 1 kernel per element (the latency of ``a * h + x``), on
  cache-resident arrays.
* ``compute_scale``: P copies of that chain run at once, over one (at most P): what P cores add
  in compute (two hyperthreads of one core add little).

Alongside, ``cpu_share``: the CPU time this process got while its P threads ran, over P x the
wall time. Below ``SHARE_MIN`` other processes held the cores (hyperthreads still count in full).

Each time is the best of ``ROUNDS``. A busy machine measures less scaling than it has (other
processes hold the cores), which only makes ``auto`` choose cpu-serial more often: on
intel-xeon-2c with two other processes running flat out, two threads copied at 0.99x and computed
at 1.01x one thread; at a load of 1.2 per core, 1.53x and 1.85x. Facts measured busy (a 1-minute
load average of ``BUSY`` per core or more, or a ``cpu_share`` under ``SHARE_MIN``) are measured
again by a process that finds the load under ``BUSY``, at most once per ``RETRY_BUSY_S``.

The facts are cached outside the package: ``$LRBENCH_CACHE/facts-<machine>.json``, else
``$XDG_CACHE_HOME/lrbench/``, else ``~/.cache/lrbench/``; written atomically, stamped with the
machine name, lrbench's version and P, and measured again when any of those differ or the file
cannot be read or is not valid. Where the folder is not writable, they are kept in memory for the
process.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import threading
import time
from pathlib import Path

COPY_BYTES = 64 << 20
ROUNDS = 5
HANDOFF_ROUNDS = 15
CHAIN_T = 1 << 15  # elements of each chain's arrays: 3 x 128 KiB, in any core's L2
CHAIN_SECONDS = 0.01  # how long one chain timing runs (the kernel repeated)
FIELDS = ("copy1_GBps", "copyP_GBps", "handoff_us", "chain_ns", "compute_scale")
ENV = "LRBENCH_CACHE"
BUSY = 0.5  # the 1-minute load average per core from which facts are provisional
SHARE_MIN = 0.8  # the CPU share of P threads below which others held the cores
RETRY_BUSY_S = 3600  # how often facts measured busy are measured again, at most

_lock = threading.Lock()
_memory: dict[tuple, dict] = {}  # (machine, version, threads) -> facts, where the file failed


def cache_dir() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lrbench"


def cache_path(machine: str) -> Path:
    return cache_dir() / f"facts-{machine}.json"


def _version() -> str:
    from . import __version__

    return __version__


def _threads_now() -> int:
    from .scan.cpu import threads as _threads

    return _threads.cores()


def load_per_core() -> float | None:
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (OSError, AttributeError):
        return None


def _best(fn) -> float:
    best = math.inf
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _copies(P: int) -> tuple[float, float]:
    """Seconds of a ``COPY_BYTES`` copy on one thread, and cut into P parts on P threads."""
    from functools import partial

    import numpy as np

    from .scan.cpu import threads as _threads

    n = COPY_BYTES // 4
    src, dst = np.ones(n, np.float32), np.zeros(n, np.float32)  # both touched
    np.copyto(dst, src)
    one = _best(lambda: np.copyto(dst, src))
    cuts = [n * i // P for i in range(P + 1)]
    parts = [
        partial(np.copyto, dst[cuts[i] : cuts[i + 1]], src[cuts[i] : cuts[i + 1]]) for i in range(P)
    ]
    _threads.run(parts)
    return one, _best(lambda: _threads.run(parts))


def measure(threads: int | None = None) -> dict:
    """The facts of this machine for ``threads`` cores (default: cpu-chunked's, torch's count)."""
    from functools import partial

    import numpy as np

    from .scan.cpu import rows as _numba_serial
    from .scan.cpu import threads as _threads

    P = threads or _threads.cores()

    one, many = _copies(P)

    # hand-off: P empty tasks, each after the helpers have gone back to sleep
    empty = [lambda: None] * P
    _threads.run(empty)
    waits = []
    for _ in range(HANDOFF_ROUNDS):
        time.sleep(0.002)
        t0 = time.perf_counter()
        _threads.run(empty)
        waits.append(time.perf_counter() - t0)
    handoff = sorted(waits)[len(waits) // 4]  # lower quartile: load only adds

    # chain latency, alone and P at once
    T = CHAIN_T
    bufs = [
        (
            np.full(T, 0.999, np.float32),
            np.ones(T, np.float32),
            np.empty(T, np.float32),
            np.zeros(1, np.float32),
        )
        for _ in range(P)
    ]

    def chain(i, reps):
        a, x, h, c = bufs[i]
        for _ in range(reps):
            _numba_serial.scan(a, 0, x, 0, h, 0, 1, T, 1, c)

    chain(0, 1)  # compiles, or loads Numba's cache
    t0 = time.perf_counter()
    chain(0, 4)
    reps = max(4, int(CHAIN_SECONDS / max((time.perf_counter() - t0) / 4, 1e-9)))
    alone = _best(lambda: chain(0, reps))
    cpu, wall = time.process_time(), time.perf_counter()
    together = _best(lambda: _threads.run([partial(chain, i, reps) for i in range(P)]))
    share = (time.process_time() - cpu) / (P * (time.perf_counter() - wall))
    return {
        "copy1_GBps": 2 * COPY_BYTES / one / 1e9,
        "copyP_GBps": 2 * COPY_BYTES / many / 1e9,
        "handoff_us": handoff * 1e6,
        "chain_ns": alone / (reps * T) * 1e9,
        "compute_scale": min(float(P), P * alone / together),
        "cpu_share": min(1.0, share),
    }


def _valid(doc, machine: str, version: str, threads: int) -> bool:
    try:
        return (
            doc["machine"] == machine
            and doc["lrbench"] == version
            and doc["threads"] == threads
            and all(
                isinstance(doc["facts"][k], (int, float))
                and not isinstance(doc["facts"][k], bool)
                and math.isfinite(doc["facts"][k])
                and doc["facts"][k] > 0
                for k in FIELDS
            )
        )
    except (KeyError, TypeError):
        return False


def read(machine: str, threads: int | None = None) -> dict | None:
    """The cached facts of ``machine`` for ``threads`` cores and this lrbench, or None (no file,
    unreadable, corrupt, or stamped for another machine, version or thread count)."""
    threads = threads or _threads_now()
    try:
        doc = json.loads(cache_path(machine).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return doc if _valid(doc, machine, _version(), threads) else None


def write(
    machine: str, facts: dict, threads: int | None = None, load: float | None = None
) -> tuple[dict, Path | None]:
    """Stamp ``facts`` (measured under ``load`` per core) and cache them: (the document, its path,
    or None where the cache folder is not writable and the facts stay in memory for this process)."""
    from . import atomic

    threads = threads or _threads_now()
    now = time.time()
    share = facts.get("cpu_share")
    doc = {
        "machine": machine,
        "lrbench": _version(),
        "threads": threads,
        "measured_at": _iso(now),
        "measured_unix": int(now),
        "load_per_core": None if load is None else round(load, 2),
        "cpu_share": None if share is None else round(share, 2),
        "busy": _busy(load) or (share is not None and share < SHARE_MIN),
        "facts": {k: float(f"{facts[k]:.4g}") for k in FIELDS},
    }
    try:
        return doc, atomic.write_json(cache_path(machine), doc, indent=2)
    except OSError:
        _memory[(machine, doc["lrbench"], threads)] = doc
        return doc, None


def facts(machine: str | None = None, remeasure: bool = False) -> dict:
    """This machine's facts document (``{"machine", "lrbench", "threads", "measured_at",
    "facts": {...}}``): from the cache, else measured now and cached. One caller measures at a
    time; the others then read what it found."""
    if machine is None:
        from .machine import name

        machine = name()
    threads = _threads_now()
    with _lock:
        load = load_per_core()
        if not remeasure:
            doc = _memory.get((machine, _version(), threads)) or read(machine, threads)
            if doc is not None and not _retry(doc, load):
                return doc
        return write(machine, measure(threads), threads, load)[0]


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds")


def _busy(load) -> bool:
    return isinstance(load, (int, float)) and load >= BUSY


def _retry(doc: dict, load: float | None) -> bool:
    """Whether facts measured busy should be measured again now (the machine is quieter, and the
    last try is ``RETRY_BUSY_S`` old)."""
    age = (
        time.time() - doc.get("measured_unix", 0)
        if isinstance(doc.get("measured_unix"), int)
        else math.inf
    )
    return doc.get("busy") is True and load is not None and not _busy(load) and age >= RETRY_BUSY_S
