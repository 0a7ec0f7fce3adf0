"""``lrbench seed000``: steps to solve problem 2b at lag N, state-table method vs BPTT and TBPTT.

Same cell (tanh RNN), data (M training sequences, alphabet p), optimiser (Adam, one learning
rate) and step budget for every method; held-out sequences are scored only by sequential roll-out
from the shared initial state. A method "solves" lag N at the first evaluation (every
``eval_every`` steps) with held-out accuracy >= 99 %. Rows go to ``results/seed000/runs.csv``,
written after every run (atomically), and finished rows are not re-run.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import atomic
from ..tasks import problem_2b
from .cells import TanhCell
from .table import FrozenTableOptimizer, TableModel

PRESETS = {
    "quick": dict(lags=[4, 8, 16], seeds=[0, 1, 2], methods=["table-K1", "table-K4", "bptt", "tbptt"],
                  max_steps=2000),
    "full": dict(lags=[4, 8, 16, 32, 64, 128], seeds=[0, 1, 2],
                 methods=["table-K1", "table-K4", "table-K16", "bptt", "tbptt"], max_steps=20000),
}


def data(M, N, p, seed):
    idx, sign, label = problem_2b(N, M, p, torch.Generator().manual_seed(seed))
    x = F.one_hot(idx.T, p).float()
    x[:, 0] *= sign[:, None]
    return x, label


class RollOut(nn.Module):
    """The cell trained by back-propagation through the roll-out; ``window`` truncates it."""

    def __init__(self, cell, n, window=None):
        super().__init__()
        self.cell, self.readout, self.window = cell, nn.Linear(n, 2), window

    def forward(self, x):
        h = x.new_zeros(x.shape[0], self.readout.in_features)
        for t in range(x.shape[1]):
            if self.window and t % self.window == 0:
                h = h.detach()
            h = self.cell(h, x[:, t])
        return self.readout(h)


def run_one(method, N, seed, *, M=512, p=8, n=32, lr=0.01, mu=1.0, max_steps=3000, eval_every=25):
    torch.manual_seed(seed)
    x, y = data(M, N, p, seed)
    hx, hy = data(1024, N, p, 10_000 + seed)
    cell = TanhCell(p, n)
    if method.startswith("table"):
        K = int(method.split("-K")[1])
        model = TableModel(cell, n, M, N)
        opt = FrozenTableOptimizer(model, lr, freeze=K)
        ids = torch.arange(M)

        def step():
            ce, cons, _ = model.losses(ids, x, y, mu)
            (ce + cons).backward()
            opt.step()
        evaluate = lambda: model.roll_out_logits(hx)
    else:
        model = RollOut(cell, n, window=max(N // 2, 1) if method == "tbptt" else None)
        adam = torch.optim.Adam(model.parameters(), lr=lr)

        def step():
            adam.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            adam.step()

        def evaluate():
            with torch.no_grad():
                return model(hx)
    solved_at, acc, start = None, 0.0, time.perf_counter()
    for s in range(1, max_steps + 1):
        step()
        if s % eval_every == 0:
            acc = (evaluate().argmax(-1) == hy).float().mean().item()
            if acc >= 0.99:
                solved_at = s
                break
    seconds = time.perf_counter() - start
    row = dict(method=method, N=N, seed=seed, M=M, p=p, n=n, lr=lr, mu=mu, max_steps=max_steps,
               solved=solved_at is not None, steps=solved_at or s, heldout_acc=acc,
               seconds_per_step=seconds / s, epochs=(solved_at or s))
    if method.startswith("table"):
        row.update(max_residual=model.max_residual(x), table_bytes=model.table.numel() * 4)
    return row


def fit_alpha(df: pd.DataFrame) -> pd.DataFrame:
    """steps ≈ c · N^α per method, least squares on log-log over solved (method, N) medians."""
    out = []
    for method, g in df[df.solved].groupby("method"):
        med = g.groupby("N").steps.median()
        if len(med) >= 2:
            alpha, logc = np.polyfit(np.log(med.index.values), np.log(med.values), 1)
            out.append(dict(method=method, alpha=alpha, c=math.exp(logc), lags=len(med)))
    return pd.DataFrame(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="lrbench seed000")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    ap.add_argument("--out", default="results/seed000")
    args = ap.parse_args(argv)
    cfg = PRESETS[args.preset]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"runs_{args.preset}.csv"
    df = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    from tqdm import tqdm
    jobs = [(m, N, s) for N in cfg["lags"] for m in cfg["methods"] for s in cfg["seeds"]]
    for m, N, s in tqdm(jobs, desc="seed000"):
        if not df.empty and ((df.method == m) & (df.N == N) & (df.seed == s)).any():
            continue
        df = pd.concat([df, pd.DataFrame([run_one(m, N, s, max_steps=cfg["max_steps"])])], ignore_index=True)
        atomic.write_csv(df, csv)
    summary = df.groupby(["method", "N"]).agg(solved=("solved", "sum"), runs=("solved", "size"),
                                             median_steps=("steps", "median"),
                                             ms_per_step=("seconds_per_step", lambda v: 1e3 * v.median()))
    print(summary.to_string())
    alpha = fit_alpha(df)
    print(alpha.to_string(index=False))
    alpha.to_csv(out / f"alpha_{args.preset}.csv", index=False)
    return 0
