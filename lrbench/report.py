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
        repeats = row.get("stats_repeat") or [None] * len(values)
        _want(isinstance(values, list) and isinstance(params, list)
              and all(isinstance(p, list) for p in params) and isinstance(repeats, list),
              f"the result or params of {name} are not lists")
        for combo, value, repeat in zip(itertools.product(*params), values, repeats):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            _want(isinstance(value, (int, float)) and not isinstance(value, bool),
                  f"{name} holds {value!r} where a number belongs")
            rec = dict(machine=path.parent.name, commit=commit[:8], date=date, benchmark=name,
                       value=float(value), unit=meta.get("unit", ""), samples=repeat)
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
    keys = [c for c in df.columns if c not in ("commit", "date", "value", "unit", "samples")]
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
    fig, ax = plt.subplots(figsize=(9, 5))
    for case, g in t.groupby("case"):
        g = g.set_index("commit").reindex(order).value
        if g.notna().sum() < 2:
            continue
        ax.plot(range(len(order)), g / g.dropna().iloc[0], marker="o", ms=3, lw=1, label=case)
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xticks(range(len(order)), order, rotation=60, fontsize=7)
    ax.set(yscale="log", xlabel="commit (oldest first)", ylabel="time / time at first commit",
           title=f"regression subset over the project's commits, {machine}")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    _save(fig, figures, f"history_{machine}", written)
    plt.close(fig)


# Fixed SVG ids (matplotlib hashes them with this salt) and no creation date: the same data draw
# the same bytes, so regenerating an unchanged chart leaves the file alone.
REPRODUCIBLE = {"svg.hashsalt": "lrbench"}


class NoResults(Failure):
    """The results folder is missing or holds nothing to plot; ``problems`` says what was wrong."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message)
        self.problems = problems


def _save(fig, out: Path, stem: str, written: list[Path], exts=("png", "svg")):
    """Render ``fig`` as each format and write the files whose bytes changed (listed in ``written``)."""
    import io

    import matplotlib
    for ext in exts:
        path, buf = out / f"{stem}.{ext}", io.BytesIO()
        with matplotlib.rc_context(REPRODUCIBLE):
            fig.savefig(buf, format=ext, dpi=120, bbox_inches="tight", metadata={"Date": None})
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
    if atomic.write_if_changed(path, text.encode()):
        written.append(path)


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


def speedup_chart(df, machine, figures, written):
    import matplotlib.pyplot as plt
    t = _select(df, "bench_scan.ScanForward.time_forward", dtype="float32", output="out")
    sp = _speedups(t, ["N", "T"])
    if sp.empty:
        return
    pairs = list(dict.fromkeys(sp.pair))
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.5 * len(pairs), 4), squeeze=False)
    for ax, pair in zip(axes[0], pairs):
        for N, g in sp[sp.pair == pair].groupby("N"):
            ax.plot(g["T"], g["speedup"], marker="o", label=f"N = {int(N)}")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="speedup (x)",
               title=f"{pair}, fp32 forward")
        ax.legend(fontsize=8)
    fig.suptitle(f"parallel vs serial scan on {machine}")
    _save(fig, figures, f"speedup_vs_length_{machine}", written)
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
    _save(ax.figure, figures, f"percent_of_copy_{machine}", written)
    plt.close(ax.figure)
    copy = _select(df, "bench_bandwidth.Copy.track_copy_GBps_higher_is_better")
    text = (f"# Scan bandwidth on {machine}\n\nfp32 forward, 12 bytes per element, as % of a copy "
            f"of the same bytes measured in the same process (higher is better).\n\n"
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
        ax.plot(p["T"], p["speedup"], "k--", marker="s", label="paper (K80, PLR/SLR)")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", xlabel="T", title=f"m = {m}, minibatch 1")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("speedup over the serial kernel (x)")
    fig.suptitle(f"Table 1 on {machine}, beside the paper")
    _save(fig, figures, f"table1_{machine}", written)
    plt.close(fig)
    lines = [f"# Table 1 on {machine}: parallel / serial kernel speedup, minibatch 1, fp32 forward",
             "", f"Paper: {paper['source'].iloc[0]}.", ""]
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
    fig, ax = plt.subplots(figsize=(7, 4))
    for (device, hidden, model), g in sp.groupby(["device", "hidden", "model"]):
        line, = ax.plot(g["T"], g["speedup"], marker="o", label=f"ours {model} ({device}, {int(hidden)} units)")
        p = paper[paper.model == PAPER_MODEL.get(model)]
        ax.plot(p["T"], p["speedup"], ls="--", marker="s", color=line.get_color(), alpha=0.6,
                label=f"paper {model} (K80, 256 units)")
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", yscale="log", xlabel="T (batch = 65536 / T)", ylabel="parallel / serial speedup",
           title=f"Table 2 on {machine}: training step, 2 layers")
    ax.legend(fontsize=6)
    _save(fig, figures, f"table2_{machine}", written)
    plt.close(fig)
    ours = sp.assign(col=lambda d: d.model + " " + d.device + " h" + d.hidden.astype(int).astype(str))
    both = paper.pivot_table(index="T", columns="model", values="speedup")
    both.columns = [f"paper {c}" for c in both.columns]
    both = both.join(ours.pivot_table(index="T", columns="col", values="speedup"), how="outer")
    _write_text(tables / f"table2_{machine}.md",
                f"# Table 2 on {machine}: serial / parallel time of one training step\n\n"
                f"Paper: {paper['source'].iloc[0]}.\n\n{markdown(both.round(2))}\n", written)


def heatmap(df, machine, paper: pd.DataFrame, tables, written):
    t = _select(df, "bench_models.Heatmap.time_train_step")
    if t.empty:
        return
    t = t.astype({"batch": int, "T": int}).assign(k_steps_per_s=lambda d: d.batch * d["T"] / d.value / 1e3)
    lines = [f"# GILR-LSTM vs LSTM training throughput on {machine} (thousand steps/s; "
             "2 layers x 256 units, 32-dim input)", ""]
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
    t = _select(df, "bench_scan.ScanForward.time_forward", dtype="float32", output="out")
    if t.empty:
        return
    ms = t.astype({"N": int, "T": int}).assign(ms=t.value * 1e3).pivot_table(index=["N", "T"], columns="backend", values="ms")
    text = (f"# Forward scan time on {machine} (ms, fp32, median; lower is better)\n\n"
            f"{markdown(ms.round(3))}\n")
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
    written: list[Path] = []
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
    return written, problems
