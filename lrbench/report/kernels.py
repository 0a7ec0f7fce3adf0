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


def kernels_table(df, machine, tables, written):
    k = _select(df, LADDER)
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
    h = _select(df, HEADS)
    if not h.empty:
        h = h.astype({"N": int})
        serial = fwd[fwd.variant == "serial"].set_index("N").value
        h = h.assign(speedup=serial.reindex(h.N).to_numpy() / h.value)
        parts += [
            "\n## The pipeline's chunk 0 length over the others' (`chunked.HEAD`, 2/3 by "
            "theory): the serial kernel's time over the pipeline's\n",
            markdown(h.pivot_table(index="head", columns="N", values="speedup").round(2)),
        ]
    o = _select(df, HANDOFF)
    if not o.empty:
        parts += [
            "\n## Thread hand-off\n",
            f"An empty pair of tasks through cpu-chunked's threads (the caller and one helper): "
            f"{o.value.median() * 1e6:.0f} us. The three-pass schedule pays two a tile, the "
            "pipeline one.",
        ]
    write_text(tables / f"kernels_{machine}.md", "\n".join(parts) + "\n", written)


def peers_table(df, machine, tables, written):
    p = _select(df, PEERS)
    if p.empty:
        return
    p = p.assign(torch=p.torch if "torch" in p else "?")
    # the peer grid as the newest run has it (older runs timed other shapes)
    p = p[p.TxN.isin(p[p.date == p.date.max()].TxN)]
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
