"""The second round's summary and charts, from its CSVs alone (``round2.run`` calls ``write``).

Intervals: a solve rate k/n carries its 95 % Wilson interval; steps to solve, over the solved
seeds, their geometric mean with a 95 % t interval on log steps; α (steps ≈ c·N^α over the lags of
one recipe) a 95 % t interval from the least-squares fit over every solved run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from lrbench import atomic
from lrbench.report.draw import markdown, save
from .selection import choose_lr, depth_per_step

T975 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
]  # two-sided 95 % t quantiles, 1..20 degrees of freedom


def t975(df: int) -> float:
    return T975[df - 1] if df <= len(T975) else 1.96 + 2.5 / df


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a rate k/n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    mid, half = (p + z * z / (2 * n)), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (mid - half) / (1 + z * z / n), (mid + half) / (1 + z * z / n)


def geo_ci(steps) -> str:
    """'geometric mean [low, high]' of solved runs' steps (the mean alone for one run)."""
    s = np.log(np.asarray(steps, dtype=float))
    if len(s) == 0:
        return ""
    if len(s) == 1:
        return f"{math.exp(s[0]):.0f}"
    half = t975(len(s) - 1) * s.std(ddof=1) / math.sqrt(len(s))
    return f"{math.exp(s.mean()):.0f} [{math.exp(s.mean() - half):.0f}, {math.exp(s.mean() + half):.0f}]"


def outcome(g: pd.DataFrame, sweep_seeds=None) -> dict:
    """Solve rate with its interval, steps, why the unsolved runs stopped, and the accuracies of
    one recipe at one lag. With ``sweep_seeds``, also the solve rate of the other seeds alone (the
    sweep seeds' runs chose the rate, so they are not independent draws)."""
    ran = g[g.stopped_by != "skipped"]
    k, n = int(ran.solved.astype(bool).sum()), len(ran)
    lo, hi = wilson(k, n)
    solved = ran[ran.solved.astype(bool)]
    out = {"solved": f"{k}/{n}" if n else "skipped", "95% CI": f"[{lo:.2f}, {hi:.2f}]" if n else ""}
    if sweep_seeds is not None:
        other = ran[~ran.seed.isin(sweep_seeds)]
        out["solved, other seeds"] = (
            f"{int(other.solved.astype(bool).sum())}/{len(other)}" if n else ""
        )
    stops = ran[~ran.solved.astype(bool)].stopped_by.value_counts()
    fixed = ran[ran.data != "fresh"] if "data" in ran else ran
    out.update(
        {
            "steps (geo. mean, 95% CI)": geo_ci(solved.steps),
            "median steps": solved.steps.median(),
            "unsolved stopped by": ", ".join(f"{k} {v}" for k, v in sorted(stops.items())),
            "test acc (median)": ran.test_acc.median(),
            "test acc (min)": ran.test_acc.min(),
            "train acc (median)": fixed.train_acc.median() if len(fixed) else float("nan"),
        }
    )
    return out


def depth(runs: pd.DataFrame) -> pd.Series:
    """Sequential cell evaluations per step, forward and backward (``round2.depth_per_step``),
    from the runs' own columns: 2N for BPTT, DEER's measured iterations, the hybrid's sweeps + 2."""
    sweeps = (
        runs.sweeps_per_step.fillna(0.0)
        if "sweeps_per_step" in runs
        else pd.Series(0.0, index=runs.index)
    )
    return pd.Series(
        [
            depth_per_step(m, N, sw, d)
            for m, N, sw, d in zip(runs.method, runs.N, sweeps, runs.depth_per_step.fillna(0.0))
        ],
        index=runs.index,
    )


def alpha_fit(g: pd.DataFrame) -> dict | None:
    """steps ≈ c·N^α over every solved run of one recipe, with a 95 % interval on α; None with
    fewer than two solved lags."""
    s = g[g.solved.astype(bool)]
    if s.N.nunique() < 2:
        return None
    x, y = np.log(s.N.astype(float).values), np.log(s.steps.astype(float).values)
    A = np.stack([x, np.ones_like(x)], 1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    dof = len(x) - 2
    if dof < 1:
        return dict(alpha=coef[0], ci="", runs=len(x), lags=s.N.nunique())
    resid = y - A @ coef
    se = math.sqrt(resid @ resid / dof / ((x - x.mean()) ** 2).sum())
    h = t975(dof) * se
    return dict(
        alpha=coef[0], ci=f"[{coef[0] - h:.2f}, {coef[0] + h:.2f}]", runs=len(x), lags=s.N.nunique()
    )


def chosen(runs: pd.DataFrame, sweep_seeds) -> pd.DataFrame:
    """The fair stage's rows at each recipe's chosen rate (``round2.choose_lr``); a
    recipe skipped at a lag keeps one skipped row there."""
    fair = runs[runs.stage == "fair"]
    keep = []
    for _, g in fair.groupby(["label", "N"]):
        lr = choose_lr(g, sweep_seeds)
        if lr is not None:
            keep.append(g[(g.lr - lr).abs() < 1e-12])
        elif (g.stopped_by == "skipped").all():
            keep.append(g.iloc[:1])
    return pd.concat(keep) if keep else fair.iloc[:0]


def _table(df: pd.DataFrame, by, sweep_seeds=None) -> str:
    if df.empty:
        return "(no runs)"
    rows = [
        dict(zip(by, key if isinstance(key, tuple) else (key,)), **outcome(g, sweep_seeds))
        for key, g in df.groupby(by)
    ]
    return markdown(pd.DataFrame(rows).set_index(by[0]))


def summary(runs, trace, timing, cfg, preset) -> str:
    sweep_seeds = cfg["sweep_seeds"]
    runs = runs.assign(solved=runs.solved.fillna(False).astype(bool))
    fair, best = runs[runs.stage == "fair"], chosen(runs, sweep_seeds)
    parts = [
        f"# seed000 `{preset}`: the second round (generated by `lrbench seed000 --preset {preset}`)",
        "",
        f"Problem 2b with p = 8 and the GRU unless a table says otherwise; n = 32; {cfg['batch']} sequences "
        f"per step; solved = validation accuracy >= 0.99 at an evaluation every {cfg['eval_every']} steps. "
        f"Budgets: {cfg['max_steps']} steps or {cfg['max_seconds']:g} s (checked at evaluations), "
        f"{cfg['long_max_seconds']:g} s at the long lags, 5x both in the budget stage. Test accuracy is "
        "scored once, when a run stops. Intervals: 95 % (Wilson for solve rates, t on log steps for the "
        "geometric mean). Training accuracy is blank for fresh sequences.",
        "",
        "## Fair baselines: the learning-rate sweep (sweep seeds, validation accuracy)",
        "",
    ]
    sweep = fair[fair.seed.isin(sweep_seeds)]
    if not sweep.empty:
        cell = lambda g: (
            "skipped"
            if (g.stopped_by == "skipped").all()
            else f"{int(g.steps.iloc[0])} steps"
            if g.solved.iloc[0]
            else f"no (val {g.val_acc.iloc[0]:.2f})"
        )
        grid = pd.DataFrame(
            [
                dict(label=lab, N=N, lr=lr, result=cell(g))
                for (lab, N, lr), g in sweep.groupby(["label", "N", "lr"])
            ]
        )
        parts += [markdown(grid.pivot(index=["label", "N"], columns="lr", values="result")), ""]
    parts += [
        "## Fair baselines at each recipe's chosen rate (all seeds)",
        "",
        _table(
            best.assign(
                lr=[
                    ("" if stop == "skipped" else f"{lr:g}")
                    for lr, stop in zip(best.lr, best.stopped_by)
                ]
            ),
            ["label", "N", "lr"],
            sweep_seeds,
        ),
        "",
    ]
    deer = fair[fair.method == "deer"]
    if not deer.empty:
        bptt = fair[
            (fair.method == "bptt")
            & (fair.data == "fresh")
            & fair.seed.isin(deer.seed)
            & fair.N.isin(deer.N)
        ]
        pair = deer.merge(bptt, on=["N", "seed", "lr"], suffixes=("_deer", "_bptt"))
        cols = [
            "N",
            "seed",
            "lr",
            "solved_bptt",
            "steps_bptt",
            "solved_deer",
            "steps_deer",
            "test_acc_bptt",
            "test_acc_deer",
            "depth_per_step_deer",
        ]
        parts += [
            "## DEER against BPTT, fresh sequences, the same seeds and rates",
            "",
            markdown(pair[cols].set_index("N")),
            "",
        ]
    for stage, title, by in [
        ("ablate", "Hybrid ablations", ["label", "N"]),
        ("table", "The seed's table (no sweep) at every lag, lr 0.01", ["cell", "N"]),
        ("drift", "Hybrid on both cells (table against roll-out: the trace)", ["cell", "N"]),
        (
            "adding",
            f"The adding problem (lr 0.01, {cfg['adding_max_steps']} steps)",
            ["label", "N"],
        ),
        (
            "budget",
            "BPTT on fresh sequences with a longer budget (sweep seeds)",
            ["label", "N", "lr"],
        ),
        ("edge", "Above the rate grid", ["label", "N", "lr"]),
        ("long", "Longer lags at the chosen rate", ["label", "N", "lr"]),
    ]:
        parts += [f"## {title}", "", _table(runs[runs.stage == stage], by), ""]
    if not trace.empty:
        last = (
            trace.sort_values("step")
            .groupby(["stage", "cell", "sweeps", "freeze", "mu", "seed"])
            .tail(1)
        )
        first = (
            trace.sort_values("step")
            .groupby(["stage", "cell", "sweeps", "freeze", "mu", "seed"])
            .head(1)
        )
        cols = ["step", "drift_mean", "drift_max", "val_acc"] + [
            c for c in ("table_front", "rollout_front") if c in trace
        ]
        agg = lambda d: d.groupby(["stage", "cell", "sweeps", "freeze", "mu"])[cols].median()
        parts += [
            "## Table against roll-out, at the first and the last evaluation (medians over seeds)",
            "",
            "`drift` = |table - roll-out of the same training sequences|; `sweeps` = -1: until converged; "
            "front = leading states from which a linear probe reads sign(x_0) (table's, roll-out's).",
            "",
            markdown(
                pd.concat(
                    [agg(first).add_suffix(" first"), agg(last).add_suffix(" last")], axis=1
                ).round(4)
            ),
            "",
        ]
    fits = []
    for stage in (("fair", "long"), ("adding",)):
        sub = (
            pd.concat([best, runs[runs.stage == "long"]])
            if stage[0] == "fair"
            else runs[runs.stage == "adding"]
        )
        for lab, g in sub.groupby("label"):
            f = alpha_fit(g)
            if f:
                fits.append(dict(task=g.task.iloc[0], label=lab, **f))
    parts += [
        "## steps ≈ c·N^α over every solved run (fair at the chosen rate, and long lags)",
        "",
        "Solved runs only, so a lag where some seeds failed pulls α down; the long lags use the rate "
        "chosen at the last fair lag and a longer time budget.",
        "",
        markdown(pd.DataFrame(fits).round(3).set_index("task"))
        if fits
        else "(fewer than two solved lags)",
        "",
    ]
    if not timing.empty:
        ran = runs[runs.stopped_by != "skipped"]
        key = ["task", "cell", "label", "N"]
        d = ran.assign(depth=depth(ran)).groupby(key).depth.median()
        main = pd.concat([best, runs[runs.stage.isin(["long", "adding"])]])
        variants = runs[
            runs.stage.isin(["ablate", "table"]) & ~runs.label.isin(main.label)
        ]  # their own recipes
        solved = pd.concat([main, variants])
        steps = solved[solved.solved].groupby(key).steps.median()
        t = timing.drop(columns=[c for c in ("method", "data") if c in timing]).set_index(key)
        t = t.join(d.rename("depth per step")).join(steps.rename("median steps to solve"))
        for c in [c for c in timing.columns if c.startswith("ms_")]:
            t[f"s to solve ({c[3:]})"] = t["median steps to solve"] * t[c] / 1e3
        parts += [
            "## Time per step, alone (ms), sequential depth, and training time to solve",
            "",
            "Time to solve = median steps to solve (fair: at the chosen rate; ablation variants: lr 0.01) × "
            "ms per step: training steps only, without evaluations. Depth = sequential cell "
            "evaluations per step, forward and backward. `flushed`: subnormal floats "
            "flushed to zero (`torch.set_flush_denormal`). "
            "`scan_ms_1_thread`: the `linear_recurrence` call inside one quasi-DEER sweep, timed alone.",
            "",
            markdown(t.sort_index().round(2)),
            "",
        ]
    return "\n".join(parts) + "\n"


def write(runs, trace, timing, out: Path, preset: str, cfg: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .charts import draw

    written: list[Path] = []
    atomic.write_text(out / f"summary_{preset}.md", summary(runs, trace, timing, cfg, preset))
    written.append(out / f"summary_{preset}.md")
    runs = runs.assign(solved=runs.solved.fillna(False).astype(bool))
    best = pd.concat([chosen(runs, cfg["sweep_seeds"]), runs[runs.stage.isin(["long", "adding"])]])
    best = best[best.stopped_by != "skipped"].assign(cell=lambda d: d.task + " task, " + d.cell)
    ms = (
        timing.rename(columns={"ms_1_thread": "ms_per_step"}).assign(method=lambda d: d.label)
        if not timing.empty
        else timing
    )
    written += draw(best, pd.DataFrame(), ms, out, preset)
    if not trace.empty:
        cells = sorted(trace[trace.stage == "drift"].cell.unique()) or sorted(trace.cell.unique())
        fig, axes = plt.subplots(1, len(cells), figsize=(6 * len(cells), 4), squeeze=False)
        for ax, cell in zip(axes[0], cells):
            d = trace[(trace.cell == cell) & (trace.stage == "drift")]
            for i, (seed, g) in enumerate(d.groupby("seed")):
                ax.plot(
                    g.step,
                    g.drift_mean,
                    "-",
                    color=f"C{i}",
                    label=f"seed {seed}: mean |table - roll-out|",
                )
                ax.plot(
                    g.step,
                    g.max_residual,
                    ":",
                    color=f"C{i}",
                    label=f"seed {seed}: largest residual",
                )
            ax.set(
                yscale="log",
                xlabel="optimiser step",
                title=f"hybrid, {cell} cell, lag {int(d.N.max())}",
            )
            ax.legend(fontsize=6)
        save(fig, out, f"drift_{preset}", written)
        plt.close(fig)
    return written
