"""``auto``'s CPU rule as data: for each measured channel count N, the shortest T from which
cpu-chunked beat cpu-serial (at that T and every longer one measured), from the asv suite's own
``bench_cpu.CPUGrid`` rows. ``lrbench auto-table`` regenerates ``auto_cpu.json``; a call uses the
row of the measured N nearest its own (in log2)."""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path

TABLE = Path(__file__).with_name("auto_cpu.json")
BENCHMARK = "bench_cpu.CPUGrid.time_scan"


@functools.cache
def _rows() -> dict[int, int | None]:
    spec = json.loads(TABLE.read_text())
    return {int(N): T for N, T in spec["chunked_from_T"].items()}


@functools.cache
def _start(N: int) -> int | None:
    """The shortest T from which cpu-chunked is chosen for N channels (None: never)."""
    rows = _rows()
    return rows[min(rows, key=lambda m: (abs(math.log2(m) - math.log2(max(N, 1))), m))]


def chunked_wins(T: int, N: int) -> bool:
    start = _start(N)
    return start is not None and T >= start


def build(results: str = "results", machine: str | None = None) -> dict:
    """The table from the newest CPUGrid rows of ``machine`` (default: this machine)."""
    from . import machine as machine_mod
    from .report import NoResults, load, newest
    machine = machine or machine_mod.name()
    df, _ = load(Path(results) / "asv")
    df = newest(df)
    d = df[(df.benchmark == BENCHMARK) & (df.machine == machine)] if not df.empty else df
    if d.empty:
        raise NoResults(f"--results {results}: no {BENCHMARK} rows for this machine ({machine}); "
                        f"run `make bench BENCH=CPUGrid` first", [])
    wide = d.pivot_table(index=["N", "T"], columns="backend", values="value")
    table, commits = {}, sorted(set(d.commit))
    for N, g in wide.groupby(level="N"):
        wins = (g["cpu-chunked"] < g["cpu-serial"]).droplevel("N").sort_index()
        start = None
        for T in reversed(wins.index.tolist()):        # the longest run of wins up to the top
            if not wins[T]:
                break
            start = int(T)
        table[str(int(N))] = start
    return {"about": f"auto on the CPU: cpu-chunked from T >= the value for the nearest measured N, "
                     f"else cpu-serial (null: serial always). Measured by {BENCHMARK} (fp32, out=).",
            "machine": machine, "commits": commits, "chunked_from_T": table}
