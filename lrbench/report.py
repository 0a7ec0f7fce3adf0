"""``lrbench report``: charts and tables regenerated from the committed asv results.

Reads ``results/asv/<machine>/*.json`` (asv's own format) with pandas and the paper's numbers
from ``results/paper/*.csv``; writes PNG and SVG under ``results/figures/`` and markdown under
``results/tables/``, each only when its bytes changed (charts are byte-for-byte reproducible). A
missing, stale (benchmark code changed since) or corrupt file is reported in one line and
skipped; everything else still plots. No usable results at all is an error (``NoResults``).
"""
from __future__ import annotations

import ast
import itertools
import json
import math
from pathlib import Path

import pandas as pd

from . import atomic
from .options import Failure

# (parallel, serial) pairs whose time ratio is "the speedup"; one chart panel each.
PAIRS = [("cuda-scan", "cuda-serial"), ("cuda-paper", "cuda-serial"), ("triton-scan", "cuda-serial"),
         ("cpu-chunked", "cpu-serial")]


def _value(v):
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return v


class _Shape(ValueError):
    """A results file that is valid JSON of the wrong shape."""


def _want(ok: bool, what: str) -> None:
    if not ok:
        raise _Shape(what)


def _number(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _index(path: Path) -> dict:
    """asv's benchmark index: name -> {version, unit, param_names, params}."""
    index = json.loads(path.read_text())
    _want(isinstance(index, dict), f"a {type(index).__name__}, not an object")
    index = {k: m for k, m in index.items() if k != "version"}      # asv's format version
    _want(all(isinstance(m, dict) for m in index.values()), "not an object of benchmark objects")
    return index


def _file_rows(path: Path, benchmarks: dict, stale: set) -> list[dict]:
    """The measured points of one asv result file; names of stale benchmarks go into ``stale``."""
    data = json.loads(path.read_text())
    _want(isinstance(data, dict), f"a {type(data).__name__}, not an object")
    columns, results = data.get("result_columns"), data.get("results")
    commit, date = data.get("commit_hash"), data.get("date")
    _want(isinstance(columns, list) and all(isinstance(c, str) for c in columns),
          "result_columns is not a list of names")
    _want(isinstance(results, dict), "results is not an object")
    _want(isinstance(commit, str), "commit_hash is not a string")
    _want(isinstance(date, (int, float)) and not isinstance(date, bool),
          f"date is {date!r}, not a number of milliseconds")
    rows = []
    for name, raw in results.items():
        _want(isinstance(raw, list), f"the row of {name} is not a list")
        row = dict(zip(columns, raw))
        meta = benchmarks.get(name)
        if meta is None or meta.get("version") != row.get("version"):
            stale.add(name)
            continue
        values, params = row.get("result") or [], row.get("params") or []
        none = [None] * len(values) if isinstance(values, list) else None
        repeats = row.get("stats_repeat") or none
        q25, q75 = row.get("stats_q_25") or none, row.get("stats_q_75") or none
        _want(isinstance(values, list) and isinstance(params, list)
              and all(isinstance(p, list) for p in params)
              and all(isinstance(v, list) for v in (repeats, q25, q75)),
              f"the result or params of {name} are not lists")
        for combo, value, repeat, lo, hi in zip(itertools.product(*params), values, repeats, q25,
                                                q75):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            _want(isinstance(value, (int, float)) and not isinstance(value, bool),
                  f"{name} holds {value!r} where a number belongs")
            rec = dict(machine=path.parent.name, commit=commit[:8], date=date, benchmark=name,
                       value=float(value), unit=meta.get("unit", ""), samples=repeat,
                       q25=_number(lo), q75=_number(hi))
            rec.update({k: _value(v) for k, v in zip(meta.get("param_names", []), combo)})
            rows.append(rec)
    return rows


def load(results: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per measured point: machine, commit, date, benchmark, params..., value, unit. A file
    that cannot be read, or is JSON of the wrong shape, is one line in the problems, and skipped."""
    problems: list[str] = []
    index = results / "benchmarks.json"
    try:
        benchmarks = _index(index)
    except (OSError, ValueError) as e:
        return pd.DataFrame(), [f"{index}: cannot read the benchmark index ({e}); run the suite first"]
    rows = []
    for path in sorted(results.glob("*/*.json")):
        if path.name == "machine.json":
            continue
        stale: set = set()
        try:
            rows += _file_rows(path, benchmarks, stale)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            problems.append(f"{path}: corrupt result file, skipped ({type(e).__name__}: {e})")
            continue
        if stale:
            problems.append(f"{path}: {len(stale)} stale benchmark(s) (code changed since; re-run "
                            f"them), skipped: {', '.join(sorted(stale)[:3])}"
                            f"{' ...' if len(stale) > 3 else ''}")
    return pd.DataFrame(rows), problems


def newest(df: pd.DataFrame) -> pd.DataFrame:
    """The newest result per machine and point (every commit's rows stay in ``df`` for history)."""
    if df.empty:
        return df
    keys = [c for c in df.columns if c not in ("commit", "date", "value", "unit", "samples", "q25",
                                                 "q75")]
    return df.sort_values("date").groupby(keys, dropna=False, as_index=False).last()


def history_chart(df, machine, figures, written):
    """Time per commit (in commit order) of the regression subset's rows: a step up is a
    regression. One line per case, normalised to its first measured commit; runs that timed each
    case once (``--quick``) are left out."""
    import matplotlib.pyplot as plt
    t = _select(df, "bench_regression.Regression.time_scan")
    if "samples" in t:                        # a --quick run times once: too noisy for history
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
        ax.plot(range(len(order)), g / g.dropna().iloc[0], marker="os^"[i // 20 % 3], ms=3, lw=1.2,
                color=colours[i % 20], ls=styles[i // 20 % 3], label=case)
    ax.set_xticks(range(len(order)), order, rotation=60, fontsize=8)
    ax.set(yscale="log", xlabel="commit (oldest first)", ylabel="time / time at first commit",
           title=f"regression subset over the project's commits, {machine} (lower is faster)")
    times_axis(ax, "above 1x: slower than at the first commit")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _save(fig, figures, f"history_{machine}", written, source=stamp(t, machine))
    plt.close(fig)


# Fixed SVG ids (matplotlib hashes them with this salt) and no creation date: the same data draw
# the same bytes, so regenerating an unchanged chart leaves the file alone.
REPRODUCIBLE = {"svg.hashsalt": "lrbench"}


class NoResults(Failure):
    """The results folder is missing or holds nothing to plot; ``problems`` says what was wrong."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message)
        self.problems = problems


class Outputs(list):
    """The files a report run wrote because their bytes changed; ``made`` holds every file it
    drew, changed or not, so the rest of the output folders can be recognised as orphans."""

    def __init__(self):
        super().__init__()
        self.made: set[Path] = set()


def stamp(rows: pd.DataFrame, machine: str) -> str:
    """Where a figure's numbers come from: machine, commit(s) and UTC date(s) of ``rows``."""
    import datetime
    commits = rows.sort_values("date").drop_duplicates("commit")
    day = lambda ms: datetime.datetime.fromtimestamp(ms / 1e3, datetime.timezone.utc).strftime(
        "%Y-%m-%d")
    first, last = commits.iloc[0], commits.iloc[-1]
    if len(commits) == 1:
        return f"measured on {machine} at commit {last.commit}, {day(last.date)}"
    return (f"measured on {machine} at {len(commits)} commits, {first.commit} ({day(first.date)}) "
            f"to {last.commit} ({day(last.date)})")


def _record(path: Path, written: list[Path]) -> None:
    made = getattr(written, "made", None)
    if made is not None:
        made.add(path)


def _save(fig, out: Path, stem: str, written: list[Path], exts=("png", "svg"), source: str = ""):
    """Render ``fig`` as each format and write the files whose bytes changed (listed in
    ``written``). ``source`` (see ``stamp``) goes under the picture and into its metadata (PNG
    text chunks, SVG description)."""
    import io

    import matplotlib
    if source:
        fig.text(0.5, -0.01, source, ha="center", va="top", fontsize=8, color="dimgrey")
    for ext in exts:
        path, buf = out / f"{stem}.{ext}", io.BytesIO()
        meta = {"Date": None} if ext == "svg" else {}
        if source:
            meta |= {"Title": stem, "Source": "lrbench report", "Description": source}
        with matplotlib.rc_context(REPRODUCIBLE):
            fig.savefig(buf, format=ext, dpi=120, bbox_inches="tight", metadata=meta)
        _record(path, written)
        if atomic.write_if_changed(path, buf.getvalue()):
            written.append(path)


def markdown(df: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs tabulate, which lrbench does not pull in)."""
    df = df.reset_index()
    cols = [" ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in df.columns]
    cell = (lambda v: "" if isinstance(v, float) and math.isnan(v) else f"{v:g}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _write_text(path: Path, text: str, written: list[Path]):
    _record(path, written)
    if atomic.write_if_changed(path, text.encode()):
        written.append(path)


def times_axis(ax, label_one: str = "above: parallel faster") -> None:
    """Log axes with plain tick labels (0.5x, 2x, not 5x10^-1) and the y = 1 line labelled."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    if label_one:
        ax.annotate(label_one, xy=(0.01, 1.0), xycoords=("axes fraction", "data"),
                    xytext=(0, 3), textcoords="offset points", fontsize=8, color="dimgrey")


def _powers_of_two(ax, values) -> None:
    values = sorted({int(v) for v in values})
    ax.set_xticks(values, [f"2^{int(math.log2(v))}" if v & (v - 1) == 0 else str(v)
                           for v in values])
    ax.minorticks_off()


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
    gpu = gpu[gpu.backend.isin({b for pair in PAIRS[:3] for b in pair})] if "backend" in gpu else gpu
    panels = [("cpu-chunked / cpu-serial", grid, ("cpu-chunked", "cpu-serial"))]
    panels += [(f"{p} / {s}", gpu, (p, s)) for p, s in PAIRS[:3]
               if not gpu.empty and {p, s} <= set(gpu.backend)]
    panels = [pn for pn in panels if not pn[1].empty and set(pn[2]) <= set(pn[1].backend)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    used = []
    for ax, (title, t, (par, ser)) in zip(axes[0], panels):
        t = t.assign(**{q: t.get(q, math.nan) for q in ("q25", "q75")})   # --quick: no quartiles
        wide = t.groupby(["N", "T", "backend"])[["value", "q25", "q75"]].median().unstack("backend")
        ratio = (wide["value"][ser] / wide["value"][par]).dropna()
        lo = (wide["q25"][ser] / wide["q75"][par]).reindex(ratio.index)
        hi = (wide["q75"][ser] / wide["q25"][par]).reindex(ratio.index)
        for N in sorted(ratio.index.get_level_values("N").unique()):
            r, l, h = ratio.loc[N], lo.loc[N], hi.loc[N]
            err = [(r - l).clip(lower=0).fillna(0), (h - r).clip(lower=0).fillna(0)]
            ax.errorbar(r.index, r.values, yerr=err, marker="o", ms=4, capsize=2, lw=1.2,
                        label=f"N = {int(N)}")
        ax.set(xscale="log", yscale="log", xlabel="sequence length T",
               ylabel=f"{ser} time / {par} time", title=f"{title}, fp32 forward into out=")
        _powers_of_two(ax, ratio.index.get_level_values("T"))
        times_axis(ax, "above 1x: the parallel scan is faster")
        ax.legend(fontsize=8, ncol=2, title="channels", title_fontsize=8)
        used.append(t[t.backend.isin([par, ser])])
    fig.suptitle(f"parallel vs serial scan on {machine} (bars: quartiles over rounds)")
    _save(fig, figures, f"speedup_vs_length_{machine}", written,
          source=stamp(pd.concat(used), machine))
    plt.close(fig)


def bandwidth_chart(df, machine, figures, tables, written):
    import matplotlib.pyplot as plt
    b = _select(df, "bench_bandwidth.ScanBandwidth.track_percent_of_copy_higher_is_better")
    if b.empty:
        return
    wide = b.pivot_table(index="backend", columns="TxN", values="value")
    ax = wide.plot.bar(figsize=(8, 4), rot=30)
    ax.set(ylabel="% of copy bandwidth (12 B/element)", title=f"fp32 forward scan on {machine}")
    ax.axhline(100, color="grey", lw=0.8, ls=":")
    _save(ax.figure, figures, f"percent_of_copy_{machine}", written, source=stamp(b, machine))
    plt.close(ax.figure)
    copy = _select(df, "bench_bandwidth.Copy.track_copy_GBps_higher_is_better")
    text = (f"# Scan bandwidth on {machine}\n\n{stamp(b, machine).capitalize()}.\n\n"
            f"fp32 forward, 12 bytes per element, as % of a copy of the same bytes measured in the "
            f"same process (higher is better). The copy is torch's `copy_` on all cores; "
            f"`lrbench perfcheck`'s serial_vs_copy divides by a one-core copy instead, so its "
            f"ratio for cpu-serial reads higher.\n\n"
            f"{markdown(wide.round(1))}\n")
    if not copy.empty:
        text += ("\nCopy bandwidth (GB/s, read + write):\n\n"
                 f"{markdown(copy.astype({'MB': int}).pivot_table(index='device', columns='MB', values='value').round(1))}\n")
    _write_text(tables / f"bandwidth_{machine}.md", text, written)


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
    fig.suptitle(f"Table 1: ours on {machine}'s CPU beside the paper's K80 GPU; different "
                 f"hardware: compare how speedup grows with T, not the heights")
    _save(fig, figures, f"table1_{machine}", written, source=stamp(t, machine))
    plt.close(fig)
    lines = [f"# Table 1 on {machine}: parallel / serial kernel speedup, minibatch 1, fp32 forward",
             "", f"{stamp(t, machine).capitalize()}. Paper: {paper['source'].iloc[0]}. The paper's "
             f"column is a K80 GPU, ours this machine's CPU: different hardware.", ""]
    ours = sp.pivot_table(index="T", columns=["pair", "m"], values="speedup")
    both = paper.pivot_table(index="T", columns="m", values="speedup")
    both.columns = [f"paper m={m}" for m in both.columns]
    for pair in dict.fromkeys(sp.pair):
        for m in [4, 32, 128]:
            if (pair, m) in ours:
                both[f"{pair} m={m}"] = ours[(pair, m)]
    lines.append(markdown(both.round(2)))
    _write_text(tables / f"table1_{machine}.md", "\n".join(lines) + "\n", written)


PAPER_MODEL = {"sru": "SRU", "qrnn-2": "QRNN k=2", "qrnn-10": "QRNN k=10", "gilr-lstm": "GILR-LSTM"}


def table2(df, machine, paper: pd.DataFrame, figures, tables, written):
    import matplotlib.pyplot as plt
    t = _select(df, "bench_models.Table2.time_train_step")
    if t.empty:
        return
    wide = t.pivot_table(index=["device", "hidden", "model", "T"], columns="recurrence", values="value")
    if not {"serial", "parallel"} <= set(wide.columns):
        return
    sp = (wide["serial"] / wide["parallel"]).dropna().rename("speedup").reset_index()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for (device, hidden, model), g in sp.groupby(["device", "hidden", "model"]):
        line, = ax.plot(g["T"], g["speedup"], marker="o", label=f"ours {model} ({device}, {int(hidden)} units)")
        p = paper[paper.model == PAPER_MODEL.get(model)]
        ax.plot(p["T"], p["speedup"], ls="--", marker="s", color=line.get_color(), alpha=0.6,
                label=f"paper {model} (K80 GPU, 256 units)")
    ax.set(xscale="log", yscale="log", xlabel="T (batch = 65536 / T)", ylabel="parallel / serial speedup",
           title=f"Table 2: training step, 2 layers; ours on {machine}, the paper on a K80 GPU")
    times_axis(ax)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _save(fig, figures, f"table2_{machine}", written, source=stamp(t, machine))
    plt.close(fig)
    ours = sp.assign(col=lambda d: d.model + " " + d.device + " h" + d.hidden.astype(int).astype(str))
    both = paper.pivot_table(index="T", columns="model", values="speedup")
    both.columns = [f"paper {c}" for c in both.columns]
    both = both.join(ours.pivot_table(index="T", columns="col", values="speedup"), how="outer")
    _write_text(tables / f"table2_{machine}.md",
                f"# Table 2 on {machine}: serial / parallel time of one training step\n\n"
                f"{stamp(t, machine).capitalize()}. Paper: {paper['source'].iloc[0]} (a K80 GPU: "
                f"different hardware).\n\n{markdown(both.round(2))}\n", written)


def heatmap(df, machine, paper: pd.DataFrame, tables, written):
    t = _select(df, "bench_models.Heatmap.time_train_step")
    if t.empty:
        return
    t = t.astype({"batch": int, "T": int}).assign(k_steps_per_s=lambda d: d.batch * d["T"] / d.value / 1e3)
    lines = [f"# GILR-LSTM vs LSTM training throughput on {machine} (thousand steps/s; "
             "2 layers x 256 units, 32-dim input)", "", f"{stamp(t, machine).capitalize()}.", ""]
    for (device, model), g in t.groupby(["device", "model"]):
        lines += [f"Ours, {model} on {device}:", "",
                  markdown(g.pivot_table(index="T", columns="batch", values="k_steps_per_s").round(1)), ""]
    if not paper.empty:
        lines += [f"Paper ({paper['source'].iloc[0]}):", ""]
        for model, g in paper.groupby("model"):
            g = g.fillna({"T": 0})
            lines += [f"{model}:", "", markdown(g.pivot_table(index="T", columns="batch",
                                                             values="k_steps_per_s")), ""]
    _write_text(tables / f"heatmap_{machine}.md", "\n".join(lines), written)


def scan_table(df, machine, tables, written):
    t = _select(df, GRID)
    if t.empty:
        return
    ms = t.astype({"N": int, "T": int}).assign(ms=t.value * 1e3).pivot_table(
        index=["N", "T"], columns="backend", values="ms")
    text = (f"# Forward scan time on {machine} (ms, fp32 into out=, median; lower is better)\n\n"
            f"{stamp(t, machine).capitalize()} (asv `CPUGrid`).\n\n{markdown(ms.round(3))}\n")
    _write_text(tables / f"scan_{machine}.md", text, written)


def _paper(path: Path, problems: list[str]) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as e:
        problems.append(f"{path}: the paper's numbers are missing ({e})")
        return pd.DataFrame()


def run(results: str = "results") -> tuple[list[Path], list[str]]:
    """(files written because their content changed, problems); NoResults when ``results`` is not
    a folder or its asv results hold nothing usable."""
    import matplotlib
    matplotlib.use("Agg")
    root = Path(results)
    if not root.is_dir():
        raise NoResults(f"--results {root}: no such folder", [])
    history, problems = load(root / "asv")
    df = newest(history)
    figures, tables = root / "figures", root / "tables"
    try:
        paper1 = pd.read_csv(root / "paper" / "table1.csv")
    except (OSError, ValueError) as e:
        problems.append(f"{root / 'paper' / 'table1.csv'}: the paper's Table 1 is missing ({e})")
        paper1 = pd.DataFrame(columns=["T", "m", "speedup", "source"])
    paper2 = _paper(root / "paper" / "table2.csv", problems)
    paper_hm = _paper(root / "paper" / "heatmap.csv", problems)
    written = Outputs()
    from .distributed.chart import seqpar_chart
    seqpar_chart(root, figures, tables, written, problems)
    if df.empty:
        raise NoResults(f"{root / 'asv'}: no usable results; run `make bench` first", problems)
    for machine, d in df.groupby("machine"):
        speedup_chart(d, machine, figures, written)
        bandwidth_chart(d, machine, figures, tables, written)
        scan_table(d, machine, tables, written)
        if not paper1.empty:
            table1(d, machine, paper1, figures, tables, written)
        if not paper2.empty:
            table2(d, machine, paper2, figures, tables, written)
        heatmap(d, machine, paper_hm, tables, written)
    for machine, d in history.groupby("machine"):
        history_chart(d, machine, figures, written)
    for orphan in _orphans(written.made, figures, tables):
        orphan.unlink()
        problems.append(f"{orphan}: removed; no current results draw it any more")
    return written, problems


def _orphans(made: set[Path], *folders: Path) -> list[Path]:
    """Charts and tables in ``folders`` that this run did not draw: drawn from results that are
    gone or stale, they could not be regenerated, so they are not kept beside the rest."""
    return sorted(p for folder in folders if folder.is_dir() for p in folder.iterdir()
                  if p.suffix in (".png", ".svg", ".md") and p not in made)
