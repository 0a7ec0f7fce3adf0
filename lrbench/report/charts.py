"""The charts and tables of ``lrbench report``, one function each, from the asv rows of one
machine (``asv.load``); every one stamped with its machine, commit and date."""

from __future__ import annotations

import math

import pandas as pd

from .draw import markdown, powers_of_two, save, stamp, times_axis, write_text

# (parallel, serial) pairs whose time ratio is "the speedup"; one chart panel each.
PAIRS = [
    ("cuda-scan", "cuda-serial"),
    ("cuda-paper", "cuda-serial"),
    ("triton-scan", "cuda-serial"),
    ("cpu-chunked", "cpu-serial"),
]


def _speedups(times: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """serial time / parallel time for each PAIR where both were measured."""
    if times.empty or not {*keys, "backend"} <= set(times.columns):
        return pd.DataFrame()
    wide = times.pivot_table(index=keys, columns="backend", values="value")
    out = []
    for par, ser in PAIRS:
        if par in wide and ser in wide:
            s = (wide[ser] / wide[par]).dropna().rename("speedup").reset_index()
            s["pair"] = f"{par} / {ser}"
            out.append(s)
    return pd.concat(out) if out else pd.DataFrame()


def _select(df: pd.DataFrame, benchmark: str, **equal) -> pd.DataFrame:
    """The rows of one benchmark (with its parameter columns only), filtered by parameter values."""
    d = df[df.benchmark == benchmark].dropna(axis=1, how="all")
    for k, v in equal.items():
        d = d[d[k] == v] if k in d else d.iloc[:0]
    return d


GRID = "bench_cpu.CPUGrid.time_scan"


def speedup_chart(df, machine, figures, written):
    """The headline: cpu-chunked over cpu-serial against T, one line per N, from the CPU grid
    (fp32, out=), the bars spanning the ratio of the quartiles over rounds; GPU pairs from
    ScanForward beside it when a GPU was measured."""
    import matplotlib.pyplot as plt

    grid = _select(df, GRID)
    gpu = _select(df, "bench_scan.ScanForward.time_forward", dtype="float32", output="out")
    gpu = (
        gpu[gpu.backend.isin({b for pair in PAIRS[:3] for b in pair})] if "backend" in gpu else gpu
    )
    panels = [("cpu-chunked / cpu-serial", grid, ("cpu-chunked", "cpu-serial"))]
    panels += [
        (f"{p} / {s}", gpu, (p, s))
        for p, s in PAIRS[:3]
        if not gpu.empty and {p, s} <= set(gpu.backend)
    ]
    panels = [pn for pn in panels if not pn[1].empty and set(pn[2]) <= set(pn[1].backend)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    used = []
    for ax, (title, t, (par, ser)) in zip(axes[0], panels):
        t = t.assign(**{q: t.get(q, math.nan) for q in ("q25", "q75")})  # --quick: no quartiles
        wide = t.groupby(["N", "T", "backend"])[["value", "q25", "q75"]].median().unstack("backend")
        ratio = (wide["value"][ser] / wide["value"][par]).dropna()
        lo = (wide["q25"][ser] / wide["q75"][par]).reindex(ratio.index)
        hi = (wide["q75"][ser] / wide["q25"][par]).reindex(ratio.index)
        for N in sorted(ratio.index.get_level_values("N").unique()):
            r, l, h = ratio.loc[N], lo.loc[N], hi.loc[N]
            err = [(r - l).clip(lower=0).fillna(0), (h - r).clip(lower=0).fillna(0)]
            ax.errorbar(
                r.index,
                r.values,
                yerr=err,
                marker="o",
                ms=4,
                capsize=2,
                lw=1.2,
                label=f"N = {int(N)}",
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="sequence length T",
            ylabel=f"{ser} time / {par} time",
            title=f"{title}, fp32 forward into out=",
        )
        powers_of_two(ax, ratio.index.get_level_values("T"))
        times_axis(ax, "above 1x: the parallel scan is faster")
        ax.legend(fontsize=8, ncol=2, title="channels", title_fontsize=8)
        used.append(t[t.backend.isin([par, ser])])
    fig.suptitle(f"parallel vs serial scan on {machine} (bars: quartiles over rounds)")
    save(
        fig,
        figures,
        f"speedup_vs_length_{machine}",
        written,
        source=stamp(pd.concat(used), machine),
    )
    plt.close(fig)


def bandwidth_chart(df, machine, figures, tables, written):
    import matplotlib.pyplot as plt

    b = _select(df, "bench_bandwidth.ScanBandwidth.track_scan_over_copy")  # scan / copy time
    if b.empty:
        return
    wide = 100 / b.pivot_table(index="backend", columns="TxN", values="value")
    ax = wide.plot.bar(figsize=(8, 4), rot=30)
    ax.set(ylabel="% of copy bandwidth (12 B/element)", title=f"fp32 forward scan on {machine}")
    ax.axhline(100, color="grey", lw=0.8, ls=":")
    save(ax.figure, figures, f"percent_of_copy_{machine}", written, source=stamp(b, machine))
    plt.close(ax.figure)
    copy = _select(df, "bench_bandwidth.Copy.track_copy_seconds")
    if not copy.empty:  # read + write of MB megabytes
        copy = copy.assign(value=2 * copy.MB.astype(float) * 2**20 / copy.value / 1e9)
    text = (
        f"# Scan bandwidth on {machine}\n\n{stamp(b, machine).capitalize()}.\n\n"
        f"fp32 forward, 12 bytes per element, as % of a copy of the same bytes measured in the "
        f"same process (higher is better). The copy is torch's `copy_` on all cores; "
        f"`lrbench perfcheck`'s serial_vs_copy divides by a one-core copy instead, so its "
        f"ratio for cpu-serial reads higher.\n\n"
        f"{markdown(wide.round(1))}\n"
    )
    if not copy.empty:
        text += (
            "\nCopy bandwidth (GB/s, read + write):\n\n"
            f"{markdown(copy.astype({'MB': int}).pivot_table(index='device', columns='MB', values='value').round(1))}\n"
        )
    write_text(tables / f"bandwidth_{machine}.md", text, written)


def table1(df, machine, paper: pd.DataFrame, figures, tables, written):
    import matplotlib.pyplot as plt

    t = _select(df, "bench_paper.Table1.time_forward")
    sp = _speedups(t, ["m", "T"])
    if sp.empty:
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
    for ax, m in zip(axes, [4, 32, 128]):
        for pair, g in sp[sp.m == m].groupby("pair"):
            ax.plot(g["T"], g["speedup"], marker="o", label=f"ours: {pair}")
        p = paper[paper.m == m]
        ax.plot(p["T"], p["speedup"], "k--", marker="s", label="paper: CUDA PLR/SLR on a K80 GPU")
        ax.set(xscale="log", yscale="log", xlabel="T", title=f"m = {m}, minibatch 1")
        times_axis(ax)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("speedup over the serial kernel (x)")
    fig.suptitle(
        f"Table 1: ours on {machine}'s CPU beside the paper's K80 GPU; different "
        f"hardware: compare how speedup grows with T, not the heights"
    )
    save(fig, figures, f"table1_{machine}", written, source=stamp(t, machine))
    plt.close(fig)
    lines = [
        f"# Table 1 on {machine}: parallel / serial kernel speedup, minibatch 1, fp32 forward",
        "",
        f"{stamp(t, machine).capitalize()}. Paper: {paper['source'].iloc[0]}. The paper's "
        f"column is a K80 GPU, ours this machine's CPU: different hardware.",
        "",
    ]
    ours = sp.pivot_table(index="T", columns=["pair", "m"], values="speedup")
    both = paper.pivot_table(index="T", columns="m", values="speedup")
    both.columns = [f"paper m={m}" for m in both.columns]
    for pair in dict.fromkeys(sp.pair):
        for m in [4, 32, 128]:
            if (pair, m) in ours:
                both[f"{pair} m={m}"] = ours[(pair, m)]
    lines.append(markdown(both.round(2)))
    write_text(tables / f"table1_{machine}.md", "\n".join(lines) + "\n", written)


PAPER_MODEL = {"sru": "SRU", "qrnn-2": "QRNN k=2", "qrnn-10": "QRNN k=10", "gilr-lstm": "GILR-LSTM"}


def table2(df, machine, paper: pd.DataFrame, figures, tables, written):
    import matplotlib.pyplot as plt

    t = _select(df, "bench_models.Table2.time_train_step")
    if t.empty:
        return
    wide = t.pivot_table(
        index=["device", "hidden", "model", "T"], columns="recurrence", values="value"
    )
    if not {"serial", "parallel"} <= set(wide.columns):
        return
    sp = (wide["serial"] / wide["parallel"]).dropna().rename("speedup").reset_index()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for (device, hidden, model), g in sp.groupby(["device", "hidden", "model"]):
        (line,) = ax.plot(
            g["T"], g["speedup"], marker="o", label=f"ours {model} ({device}, {int(hidden)} units)"
        )
        p = paper[paper.model == PAPER_MODEL.get(model)]
        ax.plot(
            p["T"],
            p["speedup"],
            ls="--",
            marker="s",
            color=line.get_color(),
            alpha=0.6,
            label=f"paper {model} (K80 GPU, 256 units)",
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="T (batch = 65536 / T)",
        ylabel="parallel / serial speedup",
        title=f"Table 2: training step, 2 layers; ours on {machine}, the paper on a K80 GPU",
    )
    times_axis(ax)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    save(fig, figures, f"table2_{machine}", written, source=stamp(t, machine))
    plt.close(fig)
    ours = sp.assign(
        col=lambda d: d.model + " " + d.device + " h" + d.hidden.astype(int).astype(str)
    )
    both = paper.pivot_table(index="T", columns="model", values="speedup")
    both.columns = [f"paper {c}" for c in both.columns]
    both = both.join(ours.pivot_table(index="T", columns="col", values="speedup"), how="outer")
    write_text(
        tables / f"table2_{machine}.md",
        f"# Table 2 on {machine}: serial / parallel time of one training step\n\n"
        f"{stamp(t, machine).capitalize()}. Paper: {paper['source'].iloc[0]} (a K80 GPU: "
        f"different hardware).\n\n{markdown(both.round(2))}\n",
        written,
    )


def heatmap(df, machine, paper: pd.DataFrame, tables, written):
    t = _select(df, "bench_models.Heatmap.time_train_step")
    if t.empty:
        return
    t = t.astype({"batch": int, "T": int}).assign(
        k_steps_per_s=lambda d: d.batch * d["T"] / d.value / 1e3
    )
    lines = [
        f"# GILR-LSTM vs LSTM training throughput on {machine} (thousand steps/s; "
        "2 layers x 256 units, 32-dim input)",
        "",
        f"{stamp(t, machine).capitalize()}.",
        "",
    ]
    for (device, model), g in t.groupby(["device", "model"]):
        lines += [
            f"Ours, {model} on {device}:",
            "",
            markdown(g.pivot_table(index="T", columns="batch", values="k_steps_per_s").round(1)),
            "",
        ]
    if not paper.empty:
        lines += [f"Paper ({paper['source'].iloc[0]}):", ""]
        for model, g in paper.groupby("model"):
            g = g.fillna({"T": 0})
            lines += [
                f"{model}:",
                "",
                markdown(g.pivot_table(index="T", columns="batch", values="k_steps_per_s")),
                "",
            ]
    write_text(tables / f"heatmap_{machine}.md", "\n".join(lines), written)


def scan_table(df, machine, tables, written):
    t = _select(df, GRID)
    if t.empty:
        return
    ms = (
        t.astype({"N": int, "T": int})
        .assign(ms=t.value * 1e3)
        .pivot_table(index=["N", "T"], columns="backend", values="ms")
    )
    text = (
        f"# Forward scan time on {machine} (ms, fp32 into out=, median; lower is better)\n\n"
        f"{stamp(t, machine).capitalize()} (asv `CPUGrid`).\n\n{markdown(ms.round(3))}\n"
    )
    write_text(tables / f"scan_{machine}.md", text, written)


def history_chart(df, machine, figures, written):
    """Time per commit (in commit order) of the regression subset's rows: a step up is a
    regression. One line per case, normalised to its first measured commit; runs that timed each
    case once (``--quick``) are left out."""
    import matplotlib.pyplot as plt

    t = _select(df, "bench_regression.Regression.time_scan")
    if "samples" in t:  # a --quick run times once: too noisy for history
        t = t[t.samples.isna() | (t.samples > 1)]
    if t.empty or t.commit.nunique() < 2:
        return
    order = t.groupby("commit").date.min().sort_values().index.tolist()
    fig, ax = plt.subplots(figsize=(11, 5.5))
    colours, styles = plt.get_cmap("tab20").colors, ["-", "--", ":"]
    for i, (case, g) in enumerate(t.groupby("case")):
        g = g.set_index("commit").reindex(order).value
        if g.notna().sum() < 2:
            continue
        ax.plot(
            range(len(order)),
            g / g.dropna().iloc[0],
            marker="os^"[i // 20 % 3],
            ms=3,
            lw=1.2,
            color=colours[i % 20],
            ls=styles[i // 20 % 3],
            label=case,
        )
    ax.set_xticks(range(len(order)), order, rotation=60, fontsize=8)
    ax.set(
        yscale="log",
        xlabel="commit (oldest first)",
        ylabel="time / time at first commit",
        title=f"regression subset over the project's commits, {machine} (lower is faster)",
    )
    times_axis(ax, "above 1x: slower than at the first commit")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    save(fig, figures, f"history_{machine}", written, source=stamp(t, machine))
    plt.close(fig)
