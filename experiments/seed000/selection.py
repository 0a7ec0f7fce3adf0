"""How round two's runs are counted and chosen: sequential depth per step, and the learning rate a
recipe keeps. Shared by the runner (``round2``) and its report (``round2_report``)."""

from __future__ import annotations

import pandas as pd


def depth_per_step(
    method: str, N: int, sweeps_per_step: float = 0.0, deer_iters: float = 0.0
) -> float:
    """Sequential cell evaluations per optimiser step, forward and backward: 2N for BPTT; for
    DEER its measured forward plus adjoint iterations (each one parallel evaluation and a scan);
    for the hybrid its sweeps (each the same) plus the table's one parallel step forward and back."""
    if method == "deer":
        return deer_iters
    if method == "hybrid":
        return sweeps_per_step + 2.0
    return 2.0 * N


def choose_lr(rows: pd.DataFrame, seeds) -> float | None:
    """The rate whose runs on ``seeds`` (one recipe, one lag) did best on validation: most solved,
    then fewest steps (median of the solved), then highest validation accuracy; None if none ran."""
    rows = rows[rows.seed.isin(seeds) & (rows.stopped_by != "skipped")]
    if rows.empty:
        return None
    solved = rows.solved.astype(bool)
    rank = lambda lr: (
        -solved[rows.lr == lr].sum(),
        rows[solved & (rows.lr == lr)].steps.median()
        if (solved & (rows.lr == lr)).any()
        else float("inf"),
        -rows[rows.lr == lr].val_acc.mean(),
        lr,
    )
    return float(min(sorted(set(rows.lr)), key=rank))
