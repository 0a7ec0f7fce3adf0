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
from .checkpoint import NAME as CHECKPOINT
from .models import MODELS
from .options import POSITIVE, POSITIVE_INT, device, writable_dir
from .options import parser as new_parser
from .report.draw import markdown
from .train import BIAS, LAYERS, SEED, SIZE
from .train import parser as train_parser
from .train import train


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or new_parser(
        "lrbench reproduce-2b", "Table 3: GILR-LSTM vs LSTM on problem 2b over seeds."
    )
    p.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        default=["gilr-lstm", "lstm"],
        metavar="MODEL",
        help=f"models to train, each a `lrbench train --model` ({', '.join(MODELS)})",
    )
    p.add_argument(
        "--seeds",
        type=SEED,
        nargs="+",
        default=[0, 1, 2],
        metavar="SEED",
        help="one run per model and seed",
    )
    p.add_argument("--T", type=SIZE, default=1024, help="sequence length (steps)")
    p.add_argument("--hidden", type=SIZE, default=64, help="units per layer")
    p.add_argument("--layers", type=LAYERS, default=2, help="recurrent layers")
    p.add_argument("--batch", type=SIZE, default=16, help="sequences per minibatch")
    p.add_argument("--lr", type=POSITIVE, default=3e-3, help="learning rate")
    p.add_argument(
        "--forget-bias",
        type=BIAS,
        default=8.0,
        help="initial forget-gate bias of both models (the paper's code: 5; see results/repro)",
    )
    p.add_argument(
        "--device", type=device, default="cpu", help="torch device: cpu, cuda or cuda:<index>"
    )
    p.add_argument("--max-steps", type=POSITIVE_INT, default=3000, help="step budget per run")
    p.add_argument(
        "--max-seconds", type=POSITIVE, default=600.0, help="wall-clock budget per run, in seconds"
    )
    p.add_argument(
        "--runs",
        default="runs/repro",
        help="folder of the individual runs (kept; re-running continues them)",
    )
    p.add_argument(
        "--results", default="results/repro", help="folder for the CSV and the markdown table"
    )
    return p


def run(args) -> pd.DataFrame:
    runs, results = writable_dir(args.runs, "--runs"), writable_dir(args.results, "--results")
    rows = []
    for model in args.models:
        for seed in args.seeds:
            out = (
                runs
                / f"{model}-T{args.T}-h{args.hidden}-fb{args.forget_bias:g}-lr{args.lr:g}-seed{seed}"
            )
            done = out / "summary.json"
            if done.exists():
                summary = json.loads(done.read_text())
            else:
                targs = train_parser().parse_args(["--out", str(out), "--quiet"])  # the defaults
                vars(targs).update(
                    model=model,
                    T=args.T,
                    hidden=args.hidden,
                    layers=args.layers,
                    batch=args.batch,
                    lr=args.lr,
                    forget_bias=args.forget_bias,
                    seed=seed,
                    device=args.device,
                    max_steps=args.max_steps,
                    max_seconds=args.max_seconds,
                    resume=(out / CHECKPOINT).exists(),
                )
                summary = train(targs)
            print(
                f"{model} seed {seed}: {summary['steps']} steps, {summary['seconds']:.0f} s, "
                f"{'converged' if summary['converged'] else 'not converged'}",
                flush=True,
            )
            rows.append(
                {
                    k: summary[k]
                    for k in (
                        "model",
                        "T",
                        "hidden",
                        "layers",
                        "batch",
                        "lr",
                        "forget_bias",
                        "seed",
                        "device",
                        "steps",
                        "seconds",
                        "converged",
                    )
                }
            )
            write(pd.DataFrame(rows), results)
    return pd.DataFrame(rows)


def write(df: pd.DataFrame, results: Path) -> None:
    atomic.write_csv(df, results / f"table3_T{int(df['T'].iloc[0])}.csv")
    paper = pd.read_csv(Path(__file__).resolve().parent.parent / "results" / "paper" / "table3.csv")
    lines = [
        f"# Problem 2b at T = {int(df['T'].iloc[0])}: ours beside the paper's Table 3",
        "",
        "Ours: "
        + ", ".join(
            f"{k} {df[k].iloc[0]}"
            for k in ("hidden", "layers", "batch", "lr", "forget_bias", "device")
        )
        + "; converged = 5 consecutive minibatches at 100 %.",
        "",
    ]
    agg = []
    for model, g in df.groupby("model"):
        conv = g[g.converged]
        agg.append(
            dict(
                model=model,
                runs=len(g),
                converged=len(conv),
                steps_mean=conv.steps.mean() if len(conv) else float("nan"),
                steps_std=conv.steps.std() if len(conv) > 1 else float("nan"),
                minutes_mean=conv.seconds.mean() / 60 if len(conv) else float("nan"),
                minutes_std=conv.seconds.std() / 60 if len(conv) > 1 else float("nan"),
                steps_if_not=", ".join(str(s) for s in g[~g.converged].steps),
            )
        )
    lines += [
        markdown(pd.DataFrame(agg).set_index("model").round(2)),
        "",
        f"Paper ({paper.source.iloc[0]}):",
        "",
        markdown(paper.drop(columns="source").set_index("model")),
        "",
        "Per run:",
        "",
        markdown(df.set_index("model").round({"seconds": 1})),
    ]
    atomic.write_text(results / f"table3_T{int(df['T'].iloc[0])}.md", "\n".join(lines) + "\n")
