"""``lrbench reproduce-2b``: Table 3's problem 2b runs (GILR-LSTM vs LSTM) over seeds, with the
paper's numbers beside ours in ``results/repro/``.

Each run is ``lrbench train`` in its own output folder (so it checkpoints and resumes: re-running
the command continues unfinished runs and skips finished ones); results are one CSV row per run
and a markdown table of mean ± std of steps and wall time to convergence.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from . import atomic
from .report import markdown
from .train import parser as train_parser
from .train import train


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="lrbench reproduce-2b")
    p.add_argument("--models", nargs="+", default=["gilr-lstm", "lstm"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--T", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--forget-bias", type=float, default=8.0,
                   help="initial forget-gate bias of both models (the paper's code: 5; see results/repro)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-steps", type=int, default=3000)
    p.add_argument("--max-seconds", type=float, default=600.0, help="per run")
    p.add_argument("--runs", default="runs/repro", help="folder of the individual runs")
    p.add_argument("--results", default="results/repro", help="folder for the CSV and table")
    return p


def run(args) -> pd.DataFrame:
    rows = []
    for model in args.models:
        for seed in args.seeds:
            out = Path(args.runs) / f"{model}-T{args.T}-h{args.hidden}-fb{args.forget_bias:g}-lr{args.lr:g}-seed{seed}"
            done = out / "summary.json"
            if done.exists():
                summary = json.loads(done.read_text())
            else:
                targs = train_parser().parse_args([
                    "--model", model, "--T", str(args.T), "--hidden", str(args.hidden),
                    "--layers", str(args.layers), "--batch", str(args.batch), "--lr", str(args.lr),
                    "--forget-bias", str(args.forget_bias),
                    "--seed", str(seed), "--device", args.device, "--max-steps", str(args.max_steps),
                    "--max-seconds", str(args.max_seconds), "--out", str(out), "--quiet"]
                    + (["--resume"] if (out / "checkpoint.pt").exists() else []))
                summary = train(targs)
            print(f"{model} seed {seed}: {summary['steps']} steps, {summary['seconds']:.0f} s, "
                  f"{'converged' if summary['converged'] else 'not converged'}", flush=True)
            rows.append({k: summary[k] for k in ("model", "T", "hidden", "layers", "batch", "lr", "forget_bias",
                                                  "seed", "device", "steps", "seconds", "converged")})
            write(pd.DataFrame(rows), Path(args.results))
    return pd.DataFrame(rows)


def write(df: pd.DataFrame, results: Path) -> None:
    atomic.write_csv(df, results / f"table3_T{int(df['T'].iloc[0])}.csv")
    paper = pd.read_csv(Path(__file__).resolve().parent.parent / "results" / "paper" / "table3.csv")
    lines = [f"# Problem 2b at T = {int(df['T'].iloc[0])}: ours beside the paper's Table 3", "",
             "Ours: " + ", ".join(f"{k} {df[k].iloc[0]}" for k in ("hidden", "layers", "batch", "lr", "forget_bias",
                                                                  "device"))
             + "; converged = 5 consecutive minibatches at 100 %.", ""]
    agg = []
    for model, g in df.groupby("model"):
        conv = g[g.converged]
        agg.append(dict(model=model, runs=len(g), converged=len(conv),
                        steps_mean=conv.steps.mean() if len(conv) else float("nan"),
                        steps_std=conv.steps.std() if len(conv) > 1 else float("nan"),
                        minutes_mean=conv.seconds.mean() / 60 if len(conv) else float("nan"),
                        minutes_std=conv.seconds.std() / 60 if len(conv) > 1 else float("nan"),
                        steps_if_not=", ".join(str(s) for s in g[~g.converged].steps)))
    lines += [markdown(pd.DataFrame(agg).set_index("model").round(2)), "",
              f"Paper ({paper.source.iloc[0]}):", "",
              markdown(paper.drop(columns="source").set_index("model")), "",
              "Per run:", "", markdown(df.set_index("model").round({"seconds": 1}))]
    atomic.write_text(results / f"table3_T{int(df['T'].iloc[0])}.md", "\n".join(lines) + "\n")
