"""The seed-000 charts, drawn from the CSVs alone: steps to solve against lag (log-log, one line per
method and cell, unsolved runs marked at their budget), the information front against optimiser
steps, and milliseconds per step against lag."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lrbench.report.draw import save


def draw(
    runs: pd.DataFrame, fronts: pd.DataFrame, timing: pd.DataFrame, out: Path, preset: str
) -> list[Path]:
    """``runs`` and ``fronts`` carry a ``label`` column (``experiment.label``): one line per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    labels = sorted(set(runs.label) | (set(fronts.label) if not fronts.empty else set()))
    color = {lab: f"C{i % 10}" for i, lab in enumerate(labels)}  # the same in every panel
    cells = sorted(runs.cell.unique())
    fig, axes = plt.subplots(1, len(cells), figsize=(6 * len(cells), 4.5), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        for method, g in runs[runs.cell == cell].groupby("label"):
            med = g[g.solved].groupby("N").steps.median()
            ax.plot(med.index, med.values, "o-", color=color[method], label=method)
            fail = g[~g.solved]
            ax.plot(fail.N, fail.steps, "x", color=color[method], ms=8)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="lag N",
            ylabel="optimiser steps to 99 % held-out (median)",
            title=f"{cell} cell; x = not solved within the budget",
        )
        ax.set_xscale("log", base=2)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    save(fig, out, f"steps_vs_lag_{preset}", written)
    plt.close(fig)

    if not fronts.empty:
        tanh = fronts[(fronts.cell == "tanh") & (fronts.seed == fronts.seed.min())]
        lags = sorted(tanh.N.unique())
        fig, axes = plt.subplots(1, len(lags), figsize=(4 * len(lags), 3.8), squeeze=False)
        for ax, N in zip(axes[0], lags):
            for method, g in tanh[tanh.N == N].groupby("label"):
                ax.plot(g.step, g.front, ".-", color=color[method], label=method)
            ax.axhline(N, color="k", lw=0.5)
            ax.set(
                xlabel="optimiser step",
                ylabel="front (steps carrying sign(x_0))",
                title=f"lag {N}, seed 0",
                ylim=(-0.5, N + 0.5),
            )
            ax.set_xscale("log")
        axes[0][0].legend(fontsize=7)
        save(
            fig, out, f"front_{preset}", written, exts=("png",)
        )  # an SVG of every point is megabytes
        plt.close(fig)

    if not timing.empty:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for i, ((cell, method), g) in enumerate(timing.groupby(["cell", "method"])):
            ax.plot(
                g.N,
                g.ms_per_step,
                "o-" if cell == "tanh" else "s--",
                color=f"C{i % 10}",
                label=f"{method} ({cell})",
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="lag N (= sequence length)",
            ylabel="ms per optimiser step",
            title="one CPU thread, M = 512 sequences per step",
        )
        ax.set_xscale("log", base=2)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
        save(fig, out, f"ms_per_step_{preset}", written)
        plt.close(fig)
    return written
