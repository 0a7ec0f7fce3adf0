"""Two tables of ``lrbench report``: the CPU kernel ladder (``benchmarks/bench_kernels.py``) and
the peers beside auto (``benchmarks/bench_peers.py``), each from one machine's newest asv rows."""

from __future__ import annotations

import pandas as pd

from .charts import _select
from .draw import markdown, stamp, write_text

LADDER = "bench_kernels.Ladder.time_kernel"
HEADS = "bench_kernels.PipelineHead.time_kernel"
HANDOFF = "bench_kernels.HandOff.time_empty_pair"
PEERS = "bench_peers.Peers.time_forward"
ELEMENTS = 1 << 22  # bench_kernels.ELEMENTS
VARIANTS = ["copy", "rows", "chains", "chains-blocked", "serial", "three-pass", "pipeline"]


def _columns(wide: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    return wide[[c for c in order if c in wide.columns]]


def _rows(df, benchmark) -> pd.DataFrame:
    """A benchmark's measured rows (none when every value is missing)."""
    d = _select(df, benchmark)
    return d if "value" in d else d.iloc[:0]


def kernels_table(df, machine, tables, written):
    k = _rows(df, LADDER)
    if k.empty:
        return
    k = k.astype({"N": int})
    moved = k.variant.map(lambda v: 8 if v == "copy" else 12) * ELEMENTS  # bytes a call
    k = k.assign(GBps=moved / k.value / 1e9)
    fwd = k[k.direction == "forward"]
    gbps = _columns(fwd.pivot_table(index="N", columns="variant", values="GBps"), VARIANTS)
    parts = [
        f"# CPU kernel ladder on {machine}\n",
        f"{stamp(k, machine).capitalize()} (asv `bench_kernels`). Each Numba kernel variant of "
        "the CPU scan alone, below `linear_recurrence` (no checks, autograd or output "
        "allocation): fp32, T * N = 2^22 elements, into a preallocated h, output checked "
        "against cpu-serial's first. One core, except three-pass and pipeline (cpu-chunked's "
        "schedules, on torch's thread count). `serial` is the kernel cpu-serial picks at that "
        "N; `copy` is NumPy copying x into h on one core. Medians; n/a cells do not apply.\n",
        "## Forward, GB/s (12 bytes an element; copy 8)\n",
        markdown(gbps.round(2)),
    ]
    if "copy" in gbps:
        frac = gbps.drop(columns="copy").div(gbps["copy"], axis=0)
        parts += [
            "\n## Forward, as a fraction of the one-core copy's GB/s\n",
            markdown(frac.round(2)),
        ]
    t = k.pivot_table(index="N", columns=["variant", "direction"], values="value")
    ratio = {
        v: t[(v, "reverse")] / t[(v, "forward")]
        for v in VARIANTS
        if (v, "reverse") in t and (v, "forward") in t
    }
    if ratio:
        parts += [
            "\n## Reverse time over forward time (one core; a reversed scan visits rows at "
            "falling addresses, each read upwards)\n",
            markdown(pd.DataFrame(ratio).round(2)),
        ]
    h = _rows(df, HEADS)
    if not h.empty and "serial" in set(fwd.variant):
        h = h.astype({"N": int})
        serial = fwd[fwd.variant == "serial"].set_index("N").value
        h = h.assign(speedup=serial.reindex(h.N).to_numpy() / h.value)
        parts += [
            "\n## The pipeline's chunk 0 length over the others' (`chunked.HEAD`, 2/3 by "
            "theory): the serial kernel's time over the pipeline's\n",
            markdown(h.pivot_table(index="head", columns="N", values="speedup").round(2)),
        ]
    parts += _model_section(fwd, tables.parent / "cpu" / f"facts_{machine}.json")
    o = _rows(df, HANDOFF)
    if not o.empty:
        parts += [
            "\n## Thread hand-off\n",
            f"An empty pair of tasks through cpu-chunked's threads (the caller and one helper): "
            f"{o.value.median() * 1e6:.0f} us. The three-pass schedule pays two a tile, the "
            "pipeline one.",
        ]
    write_text(tables / f"kernels_{machine}.md", "\n".join(parts) + "\n", written)


def _model_section(fwd: pd.DataFrame, path) -> list[str]:
    """cpu-chunked's schedule over the serial kernel, measured by the ladder, beside what auto's
    model predicts from the machine's facts (``make bench`` saves them beside the results)."""
    import json

    from .. import auto_rule

    from ..hwfacts import FIELDS

    try:
        doc = json.loads(path.read_text())
        facts, threads = doc["facts"], int(doc["threads"])
        if not all(isinstance(facts[k], (int, float)) and facts[k] > 0 for k in FIELDS):
            return []
    except (OSError, ValueError, KeyError, TypeError):
        return []
    t = fwd.pivot_table(index="N", columns="variant", values="value")
    rows = []
    for N in t.index:
        schedule = "pipeline" if auto_rule.pipelined(N) else "three-pass"
        if schedule in t and "serial" in t and pd.notna(t.at[N, schedule]):
            rows.append(
                dict(
                    N=N,
                    schedule=schedule,
                    measured=round(t.at[N, "serial"] / t.at[N, schedule], 2),
                    predicted=round(auto_rule.speedup(facts, ELEMENTS // N, N, threads), 2),
                )
            )
    if not rows:
        return []
    f = facts
    busy = "; measured busy" if doc.get("busy") else ""
    return [
        "\n## cpu-chunked against its model\n",
        f"The serial kernel's time over cpu-chunked's schedule (the ladder), beside the speedup "
        f"auto's model (`lrbench/auto_rule.py`) predicts from this machine's facts "
        f"(`{path.name}`, measured {doc.get('measured_at', '?')}: copy {f['copy1_GBps']:.1f} "
        f"GB/s on one thread, {f['copyP_GBps']:.1f} on {threads}; hand-off "
        f"{f['handoff_us']:.0f} us; chain {f['chain_ns']:.2f} ns an element; compute scale "
        f"{f['compute_scale']:.2f}{busy}). The pipeline's cores gain only what they add in "
        f"copy bandwidth ({f['copyP_GBps'] / f['copy1_GBps']:.2f}x here), times 3 / 3.75 at 2 "
        "cores; where they add none, the model predicts a loss and auto keeps to cpu-serial.\n",
        markdown(pd.DataFrame(rows).set_index("N")),
    ]


def peers_table(df, machine, tables, written):
    p = _rows(df, PEERS)
    if p.empty:
        return
    p = p.assign(torch=p.torch.fillna("?") if "torch" in p else "?")
    # each environment's newest run alone (older runs timed other shapes, or older code)
    p = p[p.date == p.groupby("torch").date.transform("max")]
    parts = [
        f"# auto beside the peers on {machine}\n",
        f"{stamp(p, machine).capitalize()} (asv `bench_peers.Peers`). fp32 forward over "
        "T * N = 2^22, output allocated per call, each peer in its native layout and checked "
        "against the float64 loop first; medians, ms (lower is better). One table per "
        "environment, each run in a process of its own: philtorch's wheels need torch 2.14 "
        "(`make peers`). The last rows are auto's time over each peer's in the same "
        "environment (below 1: auto faster).\n",
    ]
    for torch, e in p.groupby("torch"):
        e = e.assign(N=e.TxN.map(lambda s: int(s.split("x")[1])))
        ms = e.assign(ms=e.value * 1e3).pivot_table(
            index=["N", "TxN"], columns="subject", values="ms"
        )
        ms.index = ms.index.droplevel("N")
        ms = ms[["auto"] + sorted(c for c in ms.columns if c != "auto")] if "auto" in ms else ms
        table = ms.round(3).T
        if "auto" in ms:
            ratio = ms.drop(columns="auto").rdiv(ms["auto"], axis=0).round(2).T
            ratio.index = [f"auto / {s}" for s in ratio.index]
            table = pd.concat([table, ratio])
        table.index.name, table.columns.name = "subject", None
        parts += [f"## torch {torch}\n", markdown(table), ""]
    write_text(tables / f"peers_{machine}.md", "\n".join(parts), written)
