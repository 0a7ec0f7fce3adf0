"""``lrbench auto-table``: write this machine's entry of ``lrbench/auto_cpu.json`` from its asv
``CPUGrid`` rows, or (``--facts``) measure this machine's facts, cache them and show the rule
``auto`` derives from them beside the measured table.

Only this command imports the reporting code (pandas): ``lrbench.auto_rule``, which ``auto`` runs
on every CPU call, reads the JSON and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from . import auto_rule

ABOUT = (
    f"auto on the CPU, per machine (`lrbench machine`): cpu-chunked from T >= the value for "
    f"the nearest measured N, else cpu-serial (null: serial always). Measured by "
    f"{auto_rule.BENCHMARK} (fp32, out=); `lrbench auto-table` writes this machine's entry. "
    f"A machine without an entry derives its rule from its own measured facts "
    f"(lrbench/auto_rule.py)."
)


def build(results: str = "results", machine: str | None = None) -> dict:
    """This machine's entry (``{"chunked_from_T": {N: T or None}, "commits": [...]}``) from the
    newest CPUGrid rows of ``machine`` (default: this machine) under ``results/asv``."""
    from . import machine as machine_mod
    from .report import NoResults, load, newest

    machine = machine or machine_mod.name()
    df, _ = load(Path(results) / "asv")
    df = newest(df)
    d = df[(df.benchmark == auto_rule.BENCHMARK) & (df.machine == machine)] if not df.empty else df
    if d.empty:
        raise NoResults(
            f"--results {results}: no {auto_rule.BENCHMARK} rows for this machine "
            f"({machine}); run `make bench BENCH=CPUGrid` first",
            [],
        )
    wide = d.pivot_table(index=["N", "T"], columns="backend", values="value")
    table, commits = {}, sorted(set(d.commit))
    for N, g in wide.groupby(level="N"):
        wins = (g["cpu-chunked"] < g["cpu-serial"]).droplevel("N").sort_index()
        start = None
        for T in reversed(wins.index.tolist()):  # the longest run of wins up to the top
            if not wins[T]:
                break
            start = int(T)
        table[str(int(N))] = start
    return {"chunked_from_T": table, "commits": commits}


def updated(path: Path, machine: str, entry: dict) -> dict:
    """The table file at ``path`` (a missing one, or one of the older one-machine shape, read as
    what it held) with ``machine``'s entry replaced by ``entry``; other machines' entries kept."""
    try:
        held = auto_rule.machines(path)
    except FileNotFoundError:
        held = {}
    held = {**held, machine: entry}
    return {"about": ABOUT, "machines": {m: held[m] for m in sorted(held)}}


def write_table(
    results: str = "results", machine: str | None = None, path: Path | None = None
) -> tuple[Path, bool]:
    """Write ``machine``'s entry (default: this machine) into the table; (path, whether changed)."""
    from . import atomic
    from . import machine as machine_mod

    path = Path(path or auto_rule.TABLE)
    machine = machine or machine_mod.name()
    text = atomic.dumps(updated(path, machine, build(results, machine)), indent=2) + "\n"
    changed = not path.exists() or path.read_text() != text
    if changed:
        atomic.write_text(path, text)
        auto_rule.reset()
    return path, changed


def facts_report(remeasure: bool = True) -> str:
    """Measure (or with ``remeasure=False`` read) this machine's facts, cache them, and say what
    rule they give next to this machine's measured table, if it has one."""
    from . import hwfacts
    from . import machine as machine_mod

    name = machine_mod.name()
    doc = hwfacts.facts(name, remeasure=remeasure)
    f, P = doc["facts"], doc["threads"]
    where = hwfacts.cache_path(name)
    load, share = doc.get("load_per_core"), doc.get("cpu_share")
    lines = [
        f"{name}: facts for {P} threads, lrbench {doc['lrbench']}, measured {doc['measured_at']}"
        f" ({where if hwfacts.read(name, P) else 'kept in memory: the cache is not writable'})",
        f"  load per core         {'unknown' if load is None else f'{load:8.2f}'}, CPU share of "
        f"{P} threads {'unknown' if share is None else f'{share:.2f}'}"
        + (
            "  (busy: the scaling below is understated; measure again when quiet)"
            if doc.get("busy")
            else ""
        ),
        f"  copy, 1 thread        {f['copy1_GBps']:8.2f} GB/s",
        f"  copy, {P} threads       {f['copyP_GBps']:8.2f} GB/s "
        f"({f['copyP_GBps'] / f['copy1_GBps']:.2f}x)",
        f"  hand-off              {f['handoff_us']:8.1f} us",
        f"  chain, 1 core         {f['chain_ns']:8.3f} ns per element",
        f"  compute, {P} threads    {f['compute_scale']:8.2f}x",
    ]
    table = auto_rule.machines().get(name)
    measured = {int(k): v for k, v in table["chunked_from_T"].items()} if table else {}
    lines.append(
        "cpu-chunked from T >= (fp32); model speedup at T = 2^16 and 2^20"
        + (
            f"; measured table of {name} (commits {', '.join(table.get('commits', []))})"
            if table
            else ""
        )
    )
    for N in auto_rule.NS:
        T = auto_rule.derive(f, N, P)
        row = (
            f"  N = {N:5d}  {'never' if T is None else T:>9}  "
            f"{auto_rule.speedup(f, 1 << 16, N, P):5.2f} {auto_rule.speedup(f, 1 << 20, N, P):5.2f}"
        )
        if table:
            m = measured.get(N, "-")
            row += f"   table {'never' if m is None else m:>9}"
        lines.append(row)
    lines.append(
        f"auto here uses {'the measured table' if table else 'the rule from these facts'}"
        f" ({auto_rule.TABLE.name} {'has' if table else 'has no'} entry for {name})"
    )
    return "\n".join(lines)


def run(args) -> None:
    if getattr(args, "facts", False):
        print(facts_report())
        return
    path, changed = write_table(args.results)
    print(f"{'wrote' if changed else 'unchanged:'} {path}")
