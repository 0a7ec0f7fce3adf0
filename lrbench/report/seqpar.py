"""The sequence-parallel chart and table from ``results/cpu/seqpar.csv`` (``lrbench seqpar-bench``)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .draw import markdown, save, write_text

COLUMNS = {
    "machine",
    "T",
    "N",
    "ranks",
    "seconds",
    "speedup",
    "bytes_received_per_rank",
    "exchange_seconds",
    "oversubscribed",
    "commit",
    "date",
}


def model_bound(P: int, s: int = 12, p: int = 4) -> float:
    """The forward's best speedup with P equal slices (docs/sequence-parallel.md): none for
    P <= 2, ``s·P / (2s + p)`` beyond (s, p: bytes per element of a scan and of prod(a))."""
    return 1.0 if P <= 2 else s * P / (2 * s + p)


def _label(T: int) -> str:
    k = math.log2(T)
    return f"T = 2^{int(k)}" if k.is_integer() else f"T = {T}"


def seqpar_chart(root: Path, figures: Path, tables: Path, written: list[Path], problems: list[str]):
    path = root / "cpu" / "seqpar.csv"
    if not path.exists():
        return
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as e:
        problems.append(f"{path}: cannot read the sequence-parallel results, skipped ({e})")
        return
    if missing := COLUMNS - set(df.columns):
        problems.append(
            f"{path}: missing column(s) {sorted(missing)}, skipped; re-run lrbench seqpar-bench"
        )
        return
    import matplotlib.pyplot as plt

    for machine, d in df.groupby("machine"):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for (T, N), g in d.sort_values("ranks").groupby(["T", "N"]):
            (line,) = left.plot(g.ranks, g.seconds, marker="o", label=f"{_label(T)}, N = {N}")
            right.plot(
                g.ranks,
                g.speedup,
                marker="o",
                color=line.get_color(),
                label=f"{_label(T)}, N = {N}",
            )
            over = g[g.oversubscribed]
            right.plot(over.ranks, over.speedup, "x", ms=12, color="black")
        ranks = sorted(d.ranks.unique())
        right.plot(
            ranks,
            [model_bound(P) for P in ranks],
            color="grey",
            lw=0.8,
            ls=":",
            label="model bound, a core per rank",
        )
        right.plot([], [], "x", ms=12, color="black", label="more ranks than cores")
        left.set(
            xscale="log",
            xticks=ranks,
            xticklabels=ranks,
            xlabel="ranks (gloo, CPU)",
            ylabel="forward time (s, slowest rank)",
            title="sequence-parallel scan",
        )
        right.set(
            xscale="log",
            xticks=ranks,
            xticklabels=ranks,
            xlabel="ranks (gloo, CPU)",
            ylabel="speedup over 1 rank (x)",
            title="fp32 forward",
        )
        for ax in (left, right):
            ax.minorticks_off()
            ax.legend(fontsize=7)
        fig.suptitle(f"lrbench.distributed.linear_recurrence on {machine}")
        commits = ", ".join(sorted(d.commit.astype(str).str[:8].unique()))
        days = sorted(d.date.astype(str).str[:10].unique())
        source = f"measured on {machine} at commit {commits}, {' to '.join(dict.fromkeys([days[0], days[-1]]))}"
        save(fig, figures, f"seqpar_{machine}", written, source=source)
        plt.close(fig)
        cols = [
            "T",
            "N",
            "ranks",
            "ms",
            "speedup",
            "bytes_received_per_rank",
            "exchange_us",
            "oversubscribed",
        ]
        t = d.assign(ms=d.seconds * 1e3, exchange_us=d.exchange_seconds * 1e6)[
            cols + [c for c in ("load_average",) if c in d]
        ]
        write_text(
            tables / f"seqpar_{machine}.md",
            f"# Sequence-parallel scan on {machine} (fp32 forward, gloo over loopback)\n\n"
            f"{source.capitalize()}.\n\n"
            f"Time of the slowest rank, median over calls; bytes: payload each rank's "
            f"collectives received per call; exchange: the summary all-gather alone.\n\n"
            f"{markdown(t.set_index(['T', 'N', 'ranks']).round(3))}\n",
            written,
        )
