"""``lrbench seed000``: steps to solve problem 2b at lag N, the state table against BPTT, truncated
BPTT, quasi-DEER and the table + quasi-DEER hybrid.

Same cell, data (M training sequences, alphabet p), optimiser (Adam), hyper-parameter grid (the
preset's learning rates; table methods also its consistency weights μ) and step and time budget
for every method; held-out sequences are scored only by sequential roll-out from the shared
initial state. A method "solves" lag N at the
first evaluation (every ``eval_every`` steps) with held-out accuracy >= 99 %. At each evaluation
the information front of the states the method holds is recorded too.

Files in ``--out`` (each rewritten atomically after every run; finished runs are not re-run, so an
interrupted preset continues where it stopped): ``runs_<preset>.csv`` (one row per run),
``front_<preset>.csv`` (front per evaluation), ``timing_<preset>.csv`` (ms per step against N,
measured alone on one thread), ``alpha_<preset>.csv`` (steps ≈ c·N^α), ``summary_<preset>.md``
and the charts. ``seconds`` in a run's row includes its evaluations and is measured while other
runs share the machine: use ``timing_<preset>.csv`` for speed.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np
import pandas as pd
import torch

from lrbench import atomic
from lrbench.timing import median_time
from lrbench.options import POSITIVE_INT, writable_dir
from lrbench.options import parser as new_parser
from . import methods
from .cells import GRUCell, TanhCell
from .front import front
from .tasks import data_2b as data

CELLS = {"tanh": TanhCell, "gru": GRUCell}
ALL_METHODS = [
    "table-K1",
    "table-K4",
    "table-K16",
    "table-rand-K1",
    "hybrid",
    "deer",
    "bptt",
    "tbptt",
    "tbptt-w4",
]
TABLE_METHODS = ["table-K1", "table-K4", "table-rand-K1", "hybrid"]
# grid: the (learning rate, μ) settings each method is run with; μ only matters to table methods.
PRESETS = {
    "quick": dict(
        cells={"tanh": [4, 8]},
        seeds=[0, 1, 2],
        max_steps=500,
        max_seconds=60.0,
        methods=["table-K1", "table-K4", "table-rand-K1", "hybrid", "deer", "bptt", "tbptt"],
        grid=[(0.01, 1.0)],
    ),
    "full": dict(
        cells={"tanh": [4, 8, 16, 32, 64, 128], "gru": [4, 8, 16, 32, 64, 128]},
        seeds=[0, 1, 2],
        max_steps=2000,
        max_seconds=150.0,
        methods=ALL_METHODS,
        grid=[(0.01, 1.0)],
    ),
    # Is the table methods' failure at lag 16 (tanh) a matter of tuning? 9 settings, one seed.
    "tune": dict(
        cells={"tanh": [16, 32]},
        seeds=[0],
        max_steps=2000,
        max_seconds=150.0,
        methods=TABLE_METHODS,
        grid=[(lr, mu) for lr in (0.003, 0.01, 0.03) for mu in (0.1, 1.0, 10.0)],
    ),
}


def depth_per_step(method: str, N: int) -> float:
    """Sequential cell evaluations per optimiser step (DEER's come from its measured iterations)."""
    if method.startswith("table"):
        return 1.0
    if method == "hybrid":
        return 2.0
    return float(N)


def run_one(
    method,
    N,
    seed,
    *,
    cell="tanh",
    M=512,
    p=8,
    n=32,
    lr=0.01,
    mu=1.0,
    max_steps=3000,
    max_seconds=float("inf"),
    eval_every=5,
):
    """One run, stopped at ``max_steps`` or, at an evaluation, after ``max_seconds``; returns
    (row, front rows). ``stopped_by`` in the row says which budget ended an unsolved run."""
    torch.manual_seed(seed)
    x, y = data(M, N, p, seed)
    hx, hy = data(1024, N, p, 10_000 + seed)
    m = methods.make(method, CELLS[cell](p, n), n, x, y, lr, mu)
    fronts, solved_at, acc, start, s = [], None, 0.0, time.perf_counter(), 0
    for s in range(1, max_steps + 1):
        m.step()
        if s % eval_every == 0:
            acc = (m.logits(hx).argmax(-1) == hy).float().mean().item()
            fronts.append(
                dict(
                    method=method,
                    cell=cell,
                    N=N,
                    seed=seed,
                    lr=lr,
                    mu=mu,
                    step=s,
                    heldout_acc=acc,
                    front=front(m.states(), y),
                )
            )
            if acc >= 0.99:
                solved_at = s
                break
            if time.perf_counter() - start > max_seconds:
                break
    seconds = time.perf_counter() - start
    steps = solved_at or s
    row = dict(
        method=method,
        cell=cell,
        N=N,
        seed=seed,
        M=M,
        p=p,
        n=n,
        lr=lr,
        mu=mu,
        max_steps=max_steps,
        max_seconds=max_seconds,
        solved=solved_at is not None,
        steps=steps,
        stopped_by="solved" if solved_at else ("steps" if s == max_steps else "time"),
        epochs=steps * m.epochs_per_step,
        heldout_acc=acc,
        final_front=fronts[-1]["front"] if fronts else 0,
        depth_per_step=depth_per_step(method, N),
        seconds=seconds,
    )
    row["train_rollout_acc"] = (m.logits(x).argmax(-1) == y).float().mean().item()
    row.update(m.extras())
    if method == "deer":
        row["depth_per_step"] = row["deer_iters_per_step"]
    return row, fronts


def time_steps(method, N, *, cell="tanh", M=512, p=8, n=32, repeats=5) -> float:
    """Median seconds of one optimiser step, after one warm-up step, on the calling thread."""
    torch.manual_seed(0)
    x, y = data(M, N, p, 0)
    m = methods.make(method, CELLS[cell](p, n), n, x, y, 0.01)
    return median_time(m.step, min_reps=repeats, min_seconds=0.0, max_reps=repeats)


def fit_alpha(df: pd.DataFrame) -> pd.DataFrame:
    """steps ≈ c · N^α per (cell, label), least squares on log-log over the lags that a majority of
    the runs solved, each at the median of its solved runs."""
    if "cell" not in df:
        df = df.assign(cell="tanh")
    df = label(df)
    if "stopped_by" in df:
        df = df[df.stopped_by != "skipped"]
    out = []
    for (cell, method), g in df.groupby(["cell", "label"]):
        by_lag = g.groupby("N")
        med = by_lag.apply(
            lambda r: r[r.solved].steps.median() if r.solved.mean() > 0.5 else float("nan"),
            include_groups=False,
        ).dropna()
        if len(med) >= 2:
            alpha, logc = np.polyfit(np.log(med.index.values), np.log(med.values.astype(float)), 1)
            out.append(
                dict(
                    cell=cell,
                    method=method,
                    alpha=alpha,
                    c=math.exp(logc),
                    lags=len(med),
                    largest_solved_lag=int(med.index.max()),
                )
            )
    return pd.DataFrame(out)


def _skip(df: pd.DataFrame, method, cell, N) -> bool:
    """A method that solved no seed at the next shorter lag is not run at longer ones; those runs
    are recorded with ``stopped_by = "skipped"`` and no steps."""
    if df.empty:
        return False
    shorter = df[(df.method == method) & (df.cell == cell) & (df.N < N)]
    return not shorter.empty and not shorter[shorter.N == shorter.N.max()].solved.any()


SUMMARY = dict(
    solved=("solved", "sum"),
    runs=("solved", "size"),
    median_steps=("steps", "median"),
    median_epochs=("epochs", "median"),
    depth_per_step=("depth_per_step", "median"),
    train_lookup_acc=("train_lookup_acc", "median"),
    train_rollout_acc=("train_rollout_acc", "median"),
    heldout_acc=("heldout_acc", "median"),
    max_residual=("max_residual", "median"),
    final_front=("final_front", "median"),
    table_MiB=("table_bytes", "median"),
)


def front_milestones(fr: pd.DataFrame) -> pd.DataFrame:
    """Median over seeds of the first evaluated step at which the front reached 1, N/2 and N
    (NaN where a seed never did; the median then is NaN unless most seeds did)."""
    rows = []
    for (cell, lab, N, seed), g in label(fr).groupby(["cell", "label", "N", "seed"]):
        first = lambda k: g[g.front >= k].step.min()
        rows.append(
            dict(
                cell=cell,
                label=lab,
                N=N,
                seed=seed,
                front_1=first(1),
                front_half=first(max(N // 2, 1)),
                front_N=first(N),
            )
        )
    return (
        pd.DataFrame(rows)
        .groupby(["cell", "label", "N"])[["front_1", "front_half", "front_N"]]
        .median()
    )


def summary_markdown(
    df: pd.DataFrame,
    alpha: pd.DataFrame,
    timing: pd.DataFrame,
    preset: str,
    fr: pd.DataFrame | None = None,
) -> str:
    """The tables of ``summary_<preset>.md``: medians over seeds of every run's measurements
    (skipped runs counted in ``runs``, not in the medians), the α fits and ms per step."""
    from lrbench.report.draw import markdown

    df = label(df)
    ran = df[df.stopped_by != "skipped"] if "stopped_by" in df else df
    cols = {k: v for k, v in SUMMARY.items() if v[0] in df}
    table = ran.groupby(["cell", "label", "N"]).agg(**cols)
    table["runs"] = df.groupby(["cell", "label", "N"]).size()
    if "table_MiB" in table:
        table["table_MiB"] /= 2**20
    parts = [
        f"# seed000 `{preset}` preset: medians over seeds (generated by `lrbench seed000 --preset {preset}`)",
        "",
        "`runs` counts skipped runs too (a method that solved no seed at the shorter lag is not run again).",
        "",
        markdown(table.reset_index().round(3).set_index("cell")),
        "",
        "## steps to solve ≈ c · N^α (medians of solved runs)",
        "",
        markdown(alpha.round(3).set_index("cell"))
        if not alpha.empty
        else "(fewer than two solved lags)",
    ]
    if fr is not None and not fr.empty:
        parts += [
            "",
            "## information front: first step at which it reached 1, N/2 and N steps (median over seeds)",
            "",
            markdown(front_milestones(fr).reset_index().set_index("cell")),
        ]
    if not timing.empty:
        ms = timing.pivot_table(index=["cell", "method"], columns="N", values="ms_per_step").round(
            2
        )
        parts += [
            "",
            "## ms per optimiser step (one CPU thread, M = 512 sequences)",
            "",
            markdown(ms),
        ]
    return "\n".join(parts) + "\n"


def _grid(cfg: dict, method: str) -> list[tuple[float, float]]:
    """The preset's (lr, μ) settings for ``method``; μ (the consistency weight) only exists for
    table methods, the others run each learning rate once with μ recorded as 1."""
    if method.startswith("table") or method == "hybrid":
        return cfg["grid"]
    return sorted({(lr, 1.0) for lr, _ in cfg["grid"]})


def label(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``label`` column: the method, plus its lr and μ where the rows hold several."""
    if df.empty:
        return df.assign(label=[])
    if {"lr", "mu"} <= set(df) and len(df[["lr", "mu"]].dropna().drop_duplicates()) > 1:
        return df.assign(
            label=[f"{m} lr={lr:g} mu={mu:g}" for m, lr, mu in zip(df.method, df.lr, df.mu)]
        )
    return df.assign(label=df.method)


def _run_job(job):
    torch.set_num_threads(1)
    method, N, seed, cell, lr, mu, max_steps, max_seconds = job
    return run_one(
        method, N, seed, cell=cell, lr=lr, mu=mu, max_steps=max_steps, max_seconds=max_seconds
    )


def parser(ap: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = ap or new_parser(
        "lrbench seed000", "State-table training vs BPTT on problem 2b over lags."
    )
    from .round2 import PRESETS as ROUND2, STAGES

    ap.add_argument(
        "--preset",
        choices=sorted(PRESETS) + sorted(ROUND2),
        default="quick",
        help="quick: tanh cell, lags 4 and 8; full: tanh and GRU, lags 4-128, every method; "
        "tune: table methods at lags 16 and 32 over 9 (lr, mu) settings; round2: fair "
        "baselines, hybrid ablations, the adding problem and lags to 1024 (round2-quick: "
        "the same at lags 4-16)",
    )
    ap.add_argument(
        "--out",
        default="results/seed000",
        help="folder for the CSVs, summary and charts (finished runs there are kept)",
    )
    ap.add_argument("--jobs", type=POSITIVE_INT, default=1, help="runs at once, one thread each")
    ap.add_argument(
        "--stages",
        nargs="+",
        choices=STAGES,
        default=STAGES,
        help="round2 presets: the stages to run (default: all, in this order); the summary and "
        "charts are always redrawn",
    )
    return ap


def main(argv=None) -> int:
    return run(parser().parse_args(argv))


def run(args) -> int:
    """The preset's missing runs, then its timing, fits, summary and charts (``--out`` checked first)."""
    if args.preset not in PRESETS:
        from . import round2

        return round2.run(args)
    cfg = PRESETS[args.preset]
    out = writable_dir(args.out, "--out")
    paths = {k: out / f"{k}_{args.preset}.csv" for k in ("runs", "front", "timing", "alpha")}
    load = lambda k: pd.read_csv(paths[k]) if paths[k].exists() else pd.DataFrame()
    df, fr = load("runs"), load("front")
    if not df.empty and "cell" not in df:
        df, fr = pd.DataFrame(), pd.DataFrame()  # an older layout: start again
    torch.set_num_threads(1)
    from concurrent.futures import ProcessPoolExecutor
    from tqdm import tqdm

    bar = tqdm(
        desc="seed000",
        total=sum(len(lags) for lags in cfg["cells"].values())
        * len(cfg["seeds"])
        * sum(len(_grid(cfg, m)) for m in cfg["methods"]),
    )
    import multiprocessing

    pool = (
        ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"))
        if args.jobs > 1
        else None
    )
    for cell, lags in cfg["cells"].items():
        for N in lags:  # one lag at a time: the skip rule reads the shorter lags
            todo = []
            for method in cfg["methods"]:
                for (lr, mu), seed in itertools.product(_grid(cfg, method), cfg["seeds"]):
                    done = (
                        not df.empty
                        and (
                            (df.method == method)
                            & (df.cell == cell)
                            & (df.N == N)
                            & (df.seed == seed)
                            & np.isclose(df.lr, lr)
                            & np.isclose(df.mu, mu)
                        ).any()
                    )
                    if not done and _skip(df, method, cell, N):
                        skipped = dict(
                            method=method,
                            cell=cell,
                            N=N,
                            seed=seed,
                            lr=lr,
                            mu=mu,
                            solved=False,
                            stopped_by="skipped",
                        )
                        df = pd.concat([df, pd.DataFrame([skipped])], ignore_index=True)
                        atomic.write_csv(df, paths["runs"])
                    elif not done:
                        todo.append(
                            (method, N, seed, cell, lr, mu, cfg["max_steps"], cfg["max_seconds"])
                        )
                        continue
                    bar.update(1)
            results = pool.map(_run_job, todo) if pool else map(_run_job, todo)
            for row, fronts in results:  # written as each run finishes, in submission order
                df = pd.concat([df, pd.DataFrame([row])], ignore_index=True)
                fr = pd.concat([fr, pd.DataFrame(fronts)], ignore_index=True)
                atomic.write_csv(fr, paths["front"])
                atomic.write_csv(df, paths["runs"])
                bar.update(1)
    bar.close()
    if pool:
        pool.shutdown()
    timing = load("timing")
    have = set() if timing.empty else set(zip(timing.cell, timing.method, timing.N))
    missing = [
        (c, m, N)
        for c, lags in cfg["cells"].items()
        for N in lags
        for m in cfg["methods"]
        if (c, m, N) not in have
    ]
    for c, m, N in tqdm(missing, desc="timing"):
        row = dict(cell=c, method=m, N=N, ms_per_step=1e3 * time_steps(m, N, cell=c))
        timing = pd.concat([timing, pd.DataFrame([row])], ignore_index=True)
        atomic.write_csv(timing, paths["timing"])
    alpha = fit_alpha(df)
    atomic.write_csv(alpha, paths["alpha"])
    text = summary_markdown(df, alpha, timing, args.preset, fr)
    atomic.write_text(out / f"summary_{args.preset}.md", text)
    print(text)
    from .charts import draw

    for path in draw(label(df), label(fr), timing, out, args.preset):
        print("wrote", path)
    return 0
