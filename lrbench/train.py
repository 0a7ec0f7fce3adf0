"""``lrbench train``: problem 2b with any model; metrics as JSONL, atomic checkpoints, --resume.

Converged = the paper's criterion: ``CONVERGED_AFTER`` consecutive minibatches at 100 % accuracy.
A checkpoint (model, optimiser, every RNG, data generator, step, elapsed time, streak) is written
every ``--checkpoint-every`` steps to a temporary file and renamed over the old one, so a run
killed at any moment resumes from its last checkpoint with ``--resume`` and continues exactly.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import atomic
from .models import MODELS, SequenceClassifier
from .models.layers import FORGET_BIAS
from .tasks import problem_2b

CONVERGED_AFTER = 5


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="lrbench train")
    p.add_argument("--model", choices=MODELS, default="gilr-lstm")
    p.add_argument("--T", type=int, default=1024, help="sequence length")
    p.add_argument("--p", type=int, default=128, help="alphabet size (one-hot dimensions)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--scan-backend", default="auto")
    p.add_argument("--surrogate", choices=["previous", "current"], default="previous")
    p.add_argument("--qrnn-k", type=int, default=2)
    p.add_argument("--forget-bias", type=float, default=FORGET_BIAS,
                   help="initial bias of every forget gate, the LSTM's included (paper's code: 5)")
    p.add_argument("--max-steps", type=int, default=10000)
    p.add_argument("--max-seconds", type=float, default=float("inf"))
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--out", default="runs/train", help="folder for metrics.jsonl and checkpoint.pt")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="of the model")
    p.add_argument("--sequence-parallel", action="store_true",
                   help="under torchrun: split each sequence's time axis over the ranks "
                        "(docs/sequence-parallel.md); rank r > 0 writes to OUT/rank<r>")
    return p


def _rng_state(data_gen: torch.Generator, device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "data": data_gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, data_gen: torch.Generator, device: torch.device):
    torch.set_rng_state(state["torch"])
    data_gen.set_state(state["data"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def train(args) -> dict:
    """Run (or resume) one training run; returns the summary also written to OUT/summary.json."""
    device, out, run_step = torch.device(args.device), Path(args.out), _step
    if args.sequence_parallel:
        from .distributed.training import SequenceParallel
        seqpar = SequenceParallel(args)                       # joins the torchrun job
        device, out, run_step = seqpar.device, seqpar.out(out), seqpar.step
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.jsonl"
    torch.manual_seed(args.seed)
    model = SequenceClassifier(args.model, args.p, args.hidden, args.layers, 2, args.scan_backend,
                               args.qrnn_k, args.surrogate, args.forget_bias).to(device, getattr(torch, args.dtype))
    if args.sequence_parallel:
        seqpar.attach(model)
    opt = (torch.optim.Adam if args.optimizer == "adam" else torch.optim.SGD)(model.parameters(), lr=args.lr)
    data_gen = torch.Generator(device=device).manual_seed(args.seed + 1)
    step, elapsed, streak, converged_at = 0, 0.0, 0, None
    if args.resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ck["args"]["model"] != args.model or ck["args"]["T"] != args.T:
            raise ValueError(f"--resume: {ckpt_path} is a {ck['args']['model']} run at T={ck['args']['T']}, "
                             f"not {args.model} at T={args.T}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        _set_rng_state(ck["rng"], data_gen, device)
        step, elapsed, streak, converged_at = ck["step"], ck["elapsed"], ck["streak"], ck["converged_at"]
        _truncate_metrics(metrics_path, step)
    elif metrics_path.exists():
        metrics_path.unlink()

    from tqdm import tqdm
    bar = tqdm(total=args.max_steps, initial=step, disable=args.quiet or out != Path(args.out),
               desc=f"{args.model} T={args.T}")
    start = time.perf_counter() - elapsed
    with open(metrics_path, "a") as log:
        while step < args.max_steps and converged_at is None and time.perf_counter() - start < args.max_seconds:
            idx, sign, label = problem_2b(args.T, args.batch, args.p, data_gen, device)
            opt.zero_grad(set_to_none=True)
            loss, acc = run_step(model, idx, sign, label)
            opt.step()
            step += 1
            streak = streak + 1 if acc == 1.0 else 0
            if streak >= CONVERGED_AFTER:
                converged_at = step
            rec = dict(step=step, loss=loss, acc=acc, seconds=time.perf_counter() - start)
            log.write(json.dumps(rec) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{acc:.2f}")
            if step % args.checkpoint_every == 0 or converged_at is not None:
                log.flush()
                atomic.write(ckpt_path, lambda f: torch.save(dict(model=model.state_dict(), optimizer=opt.state_dict(),
                                  rng=_rng_state(data_gen, device), step=step,
                                  elapsed=time.perf_counter() - start, streak=streak,
                                  converged_at=converged_at, args=vars(args)), f))
    bar.close()
    summary = dict(vars(args), steps=step, seconds=time.perf_counter() - start,
                   converged=converged_at is not None, converged_at=converged_at)
    atomic.write_text(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def _step(model, idx, sign, label) -> tuple[float, float]:
    """Forward and backward of one minibatch on this process: (loss, accuracy)."""
    logits = model(idx, sign)
    loss = F.cross_entropy(logits, label)
    loss.backward()
    return loss.item(), (logits.argmax(-1) == label).float().mean().item()


def _truncate_metrics(path: Path, step: int):
    """Drop metric lines written after the checkpoint we resume from (they will be redone)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError):
            pass                                      # a line torn by the kill
    atomic.write_text(path, "".join(line + "\n" for line in keep))
