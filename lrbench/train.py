"""``lrbench train``: problem 2b with any model; metrics as JSONL, checked checkpoints, --resume.

Converged = the paper's criterion: ``CONVERGED_AFTER`` consecutive minibatches at 100 % accuracy.

Nothing is lost:
- a checkpoint (model, optimiser, every RNG, step, elapsed time, streak, settings) is written at
  step 0 and every ``--checkpoint-every`` steps (``lrbench.checkpoint``: SHA-256, loaded with
  ``weights_only=True``, the previous good one kept), so a run killed at any moment resumes with
  ``--resume``, from the previous checkpoint if the newest is damaged, and continues exactly;
- each metrics line is appended whole (a short write is continued; an error such as a full disk
  cuts the part written off again and names the file) and the file is synced before every
  checkpoint; resuming drops the lines after the checkpoint (they are redone), so no step appears
  twice, and a damaged line (a torn or non-UTF-8 one), with a warning;
- one run per folder: ``OUT/.lrbench-train.lock`` is held (``flock``) from before anything in OUT
  is read or written until the run ends, and a second ``lrbench train`` on OUT fails at once,
  naming the folder and the holder's pid;
- ``--out`` into a folder that holds a run is refused unless ``--resume`` continues it or
  ``--overwrite`` moves its files into ``OUT/overwritten-<k>/``;
- under ``--sequence-parallel`` every rank resumes from the same step: the newest one whose
  checkpoint every rank can load (or every rank fails, saying what each holds);
- a number no model could take (``--T 1e20``, ``--forget-bias 1e308``) is refused by the parser;
- ``--resume`` refuses a changed model, shape, task or seed (``FIXED``), naming both values, and
  applies a changed learning rate, step or time budget (``CHANGEABLE``), recorded in
  ``metrics.jsonl`` as ``{"step": s, "event": "resume", "changed": {...}}`` at the step ``s``
  after which it took effect.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import atomic, checkpoint
from .models import MODELS, SequenceClassifier
from .models.layers import FORGET_BIAS
from .options import POSITIVE, POSITIVE_INT, Failure, Number, device, writable_dir
from .options import parser as new_parser
from .tasks import problem_2b

CONVERGED_AFTER = 5
# What a run is: a resume with any of these changed is refused.
FIXED = (
    "model",
    "T",
    "p",
    "hidden",
    "layers",
    "batch",
    "optimizer",
    "seed",
    "device",
    "surrogate",
    "qrnn_k",
    "forget_bias",
    "dtype",
)
# What may change when resuming: applied from the resume on, and recorded in metrics.jsonl.
CHANGEABLE = ("lr", "max_steps", "max_seconds", "checkpoint_every", "scan_backend")
RUN_FILES = ("metrics.jsonl", "summary.json", checkpoint.NAME, checkpoint.PREVIOUS)
LOCK = ".lrbench-train.lock"
# What the model and torch can take: sizes fit a 32-bit index, seeds (the data's is seed + 1) a
# torch generator's 64 bits, a forget bias far beyond where the sigmoid saturates fits float32.
SIZE = Number(int, min=1, max=2**31 - 1)
LAYERS = Number(int, min=1, max=1000)
SEED = Number(int, min=0, max=2**64 - 2)
BIAS = Number(float, min=-1000, max=1000)
# What a checkpoint of a run holds: entry -> the types it may have.
STATE = {
    "model": (dict,),
    "optimizer": (dict,),
    "rng": (dict,),
    "step": (int,),
    "elapsed": (int, float),
    "streak": (int,),
    "converged_at": (int, type(None)),
    "settings": (dict,),
}


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    from .registry import names

    p = p or new_parser(
        "lrbench train", "Train a model on problem 2b, with checkpoints and --resume."
    )
    p.add_argument("--model", choices=MODELS, default="gilr-lstm", help="the recurrent layers")
    p.add_argument("--T", type=SIZE, default=1024, help="sequence length (steps)")
    p.add_argument("--p", type=SIZE, default=128, help="alphabet size (one-hot dimensions)")
    p.add_argument("--hidden", type=SIZE, default=64, help="units per layer")
    p.add_argument("--layers", type=LAYERS, default=2, help="recurrent layers")
    p.add_argument("--batch", type=SIZE, default=8, help="sequences per minibatch")
    p.add_argument("--lr", type=POSITIVE, default=3e-3, help="learning rate")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="the optimiser")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the weights (data: seed + 1)")
    p.add_argument(
        "--device", type=device, default="cpu", help="torch device: cpu, cuda or cuda:<index>"
    )
    p.add_argument(
        "--scan-backend",
        choices=["auto", *names()],
        default="auto",
        metavar="NAME",
        help="the linear recurrence's backend (see `lrbench backends`)",
    )
    p.add_argument(
        "--surrogate",
        choices=["previous", "current"],
        default="previous",
        help="GILR-LSTM gates see h~ of the previous step (the paper's equations) or the current one (its code)",
    )
    p.add_argument("--qrnn-k", type=SIZE, default=2, help="QRNN window (taps)")
    p.add_argument(
        "--forget-bias",
        type=BIAS,
        default=FORGET_BIAS,
        help="initial bias of every forget gate, the LSTM's included (paper's code: 5)",
    )
    p.add_argument(
        "--max-steps", type=POSITIVE_INT, default=10000, help="step budget (optimiser steps)"
    )
    p.add_argument(
        "--max-seconds",
        type=POSITIVE,
        default=None,
        help="wall-clock budget in seconds, resumed runs included; none when left out",
    )
    p.add_argument(
        "--checkpoint-every", type=POSITIVE_INT, default=50, help="steps between checkpoints"
    )
    p.add_argument(
        "--out", default="runs/train", help="folder for metrics.jsonl, summary.json and checkpoints"
    )
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUT from its newest good checkpoint",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in OUT, moving an earlier run's files into OUT/overwritten-<k>/",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="dtype of the weights and activations",
    )
    p.add_argument(
        "--sequence-parallel",
        action="store_true",
        help="under torchrun: split each sequence's time axis over the ranks "
        "(docs/sequence-parallel.md); rank r > 0 writes to OUT/rank<r>",
    )
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


def settings(args) -> dict:
    """What a checkpoint and summary.json record of the command line (plain values only)."""
    return {k: getattr(args, k) for k in (*FIXED, *CHANGEABLE)}


def _check_backend(name: str) -> None:
    if name == "auto":
        return
    from .registry import get

    ok, why = get(name).availability()
    if not ok:
        raise Failure(f"--scan-backend {name}: unavailable on this machine ({why})")


def _changes(stored: dict, now: dict, path: Path) -> dict:
    """The changeable settings that differ, as {name: [stored, now]}; Failure naming both values
    of every fixed one that differs."""
    fixed = [k for k in FIXED if k in stored and stored[k] != now[k]]
    if fixed:
        show = lambda values: " ".join(f"--{k.replace('_', '-')} {values[k]}" for k in fixed)
        raise Failure(
            f"--resume: {path} is a run with {show(stored)}, not {show(now)}; resume with "
            f"{show(stored)}, or start a new run elsewhere or with --overwrite"
        )
    return {k: [stored.get(k), now[k]] for k in CHANGEABLE if stored.get(k) != now[k]}


def _move_aside(out: Path, present: list[str]) -> Path:
    k = 1
    while (out / f"overwritten-{k}").exists():
        k += 1
    dest = out / f"overwritten-{k}"
    dest.mkdir()
    for name in present:
        os.replace(out / name, dest / name)
    return dest


def _lock(out: Path, create: bool) -> tuple[int, Path] | None:
    """Hold ``out/LOCK`` (``flock``) for this run's life, so that no other ``lrbench train`` reads
    or writes ``out`` meanwhile: (its descriptor, its path). Failure at once naming the folder and
    the holder's pid when another run holds it. None when ``create`` is false and there is no
    folder (no run to lock: --resume then says so)."""
    if not create and not out.is_dir():
        return None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Failure(f"--out {out}: cannot write there ({e.strerror or e})") from None
    path = out / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise Failure(f"--out {out}: cannot write there ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise Failure(f"--out {out}: cannot lock {path} ({e.strerror or e})") from None
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise Failure(
                f"--out {out}: another lrbench train{pid} is running there; wait for it "
                f"to end or use another folder"
            ) from None
        if _same_file(fd, path):
            break
        os.close(fd)  # removed by the run that held it: lock anew
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd, path


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino)


def _unlock(lock: tuple[int, Path] | None) -> None:
    """Remove the lock file, then release it (a run waiting on the removed file locks anew)."""
    if lock is not None:
        fd, path = lock
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _check_state(state: dict) -> str | None:
    """Why ``state`` is not a run's checkpoint (an entry missing or of the wrong type), or None."""
    names = {dict: "a dict", int: "an int", float: "a float", type(None): "None"}
    for key, kinds in STATE.items():
        if key not in state:
            return f"no {key!r} entry"
        value = state[key]
        if not isinstance(value, kinds) or isinstance(value, bool):
            want = " or ".join(names[k] for k in kinds)
            return f"{key!r} is a {type(value).__name__}, not {want}"
    if state["step"] < 0:
        return f"'step' is {state['step']}"
    missing = [k for k in ("torch", "data") if not isinstance(state["rng"].get(k), torch.Tensor)]
    return f"'rng' has no {missing[0]!r} state" if missing else None


def _resume_point(out: Path, present: list[str], device, seqpar) -> tuple[dict, Path]:
    """The checkpoint to resume from, (state, path): the newest usable one in ``out``; under
    --sequence-parallel the one of the newest step that every rank can load (every rank takes
    part, so every rank fails alike when there is none). Warns of each newer one skipped."""
    none_here = f"no checkpoint in {out} (no run there to continue)"
    if seqpar is None:
        if not present:
            raise Failure(f"--resume: {none_here}")
        try:
            ck, path, skipped = checkpoint.load_newest(out, device, check=_check_state)
        except checkpoint.CheckpointError as e:
            raise Failure(f"--resume: {e}") from None
    else:
        found, skipped = (
            checkpoint.load_all(out, device, check=_check_state) if present else ([], [none_here])
        )
        step = seqpar.common_step([ck["step"] for ck, _ in found], skipped)
        ck, path = next((ck, path) for ck, path in found if ck["step"] == step)
        skipped += [
            f"{p}: step {c['step']} is not on every rank" for c, p in found if c["step"] > step
        ]
    for why in skipped:
        print(f"warning: {why}; resuming from {path.name} (step {ck['step']})", file=sys.stderr)
    return ck, path


def _start(args, device, seqpar=None):
    """Check the output folder and, with --resume, the checkpoint against the command line: all
    before anything is written. Returns (checkpoint state or None, its path, changed settings)."""
    out = Path(args.out)
    present = [n for n in RUN_FILES if (out / n).exists()]
    if args.resume:
        ck, path = _resume_point(out, present, device, seqpar)
        return ck, path, _changes(ck["settings"], settings(args), path)
    if present and not getattr(args, "overwrite", False):
        raise Failure(
            f"--out {out} already holds a run ({', '.join(present)}); add --resume to continue it "
            f"or --overwrite to start afresh (the old files are moved to {out}/overwritten-<k>/)"
        )
    writable_dir(out, "--out")
    if present:
        print(f"moved the earlier run's files to {_move_aside(out, present)}", file=sys.stderr)
    return None, None, {}


def train(args) -> dict:
    """Run (or resume) one training run; returns the summary also written to OUT/summary.json.
    The run holds OUT's lock (``LOCK``) throughout."""
    dev, run_step, seqpar = torch.device(args.device), _step, None
    if args.sequence_parallel:
        from .distributed.training import SequenceParallel

        seqpar = SequenceParallel(args)  # joins the torchrun job
        dev, run_step = seqpar.device, seqpar.step
        args = argparse.Namespace(
            **{
                **vars(args),
                "out": str(seqpar.out(Path(args.out))),
                "quiet": args.quiet or seqpar.rank > 0,
            }
        )
    _check_backend(args.scan_backend)
    lock = _agreed(seqpar, lambda: _lock(Path(args.out), create=not args.resume), undo=_unlock)
    try:
        return _train(args, dev, run_step, seqpar)
    finally:
        _unlock(lock)


def _agreed(seqpar, local, undo=None):
    """``local()``, a step each rank takes alone; under --sequence-parallel the ranks then agree,
    so a failure on one rank is the same one-line error on every rank, not a wait for it
    (``undo(result)`` on the ranks whose own step had succeeded)."""
    if seqpar is None:
        return local()
    result, problem = None, None
    try:
        result = local()
    except Exception as e:  # noqa: BLE001 - reported on every rank by agree()
        problem = " ".join(str(e).split()) or type(e).__name__
    try:
        seqpar.agree(problem)
    except Failure:
        if undo is not None and result is not None:
            undo(result)
        raise
    return result


def _train(args, dev, run_step, seqpar) -> dict:
    """``train`` once OUT is locked."""
    ck, ck_path, changed = _agreed(seqpar, lambda: _start(args, dev, seqpar))
    out = Path(args.out)
    metrics_path = out / "metrics.jsonl"
    for name in RUN_FILES:  # temporary files of a killed run
        atomic.remove_stale(out, name)
    torch.manual_seed(args.seed)
    model = SequenceClassifier(
        args.model,
        args.p,
        args.hidden,
        args.layers,
        2,
        args.scan_backend,
        args.qrnn_k,
        args.surrogate,
        args.forget_bias,
    ).to(dev, getattr(torch, args.dtype))
    if seqpar is not None:
        seqpar.attach(model)
    opt = (torch.optim.Adam if args.optimizer == "adam" else torch.optim.SGD)(
        model.parameters(), lr=args.lr
    )
    data_gen = torch.Generator(device=dev).manual_seed(args.seed + 1)
    step, elapsed, streak, converged_at = 0, 0.0, 0, None
    if ck is not None:
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            _set_rng_state(ck["rng"], data_gen, dev)
            step, elapsed, streak, converged_at = (
                ck["step"],
                ck["elapsed"],
                ck["streak"],
                ck["converged_at"],
            )
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise Failure(
                f"--resume: {ck_path} does not fit this model ({str(e).splitlines()[0]})"
            ) from None
        for group in opt.param_groups:
            group["lr"] = args.lr  # a changed learning rate takes effect now
        _truncate_metrics(metrics_path, step)
    log = None

    def save():
        if log is not None:
            os.fsync(log)  # the metrics a checkpoint claims are on disk first
        checkpoint.save(
            out,
            dict(
                model=model.state_dict(),
                optimizer=opt.state_dict(),
                rng=_rng_state(data_gen, dev),
                step=step,
                elapsed=time.perf_counter() - start,
                streak=streak,
                converged_at=converged_at,
                settings=settings(args),
            ),
        )

    def write(record):
        _append(log, metrics_path, (atomic.dumps(record) + "\n").encode())

    from tqdm import tqdm  # (not even its lock when --quiet)

    bar = (
        None
        if args.quiet
        else tqdm(total=args.max_steps, initial=step, desc=f"{args.model} T={args.T}")
    )
    start = time.perf_counter() - elapsed
    if ck is None:
        save()  # before metrics.jsonl: a run with metrics can resume
    log = os.open(metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        if ck is not None:
            write(dict(step=step, event="resume", checkpoint=ck_path.name, changed=changed))
        budget = args.max_seconds if args.max_seconds is not None else float("inf")
        while (
            step < args.max_steps and converged_at is None and time.perf_counter() - start < budget
        ):
            idx, sign, label = problem_2b(args.T, args.batch, args.p, data_gen, dev)
            opt.zero_grad(set_to_none=True)
            loss, acc = run_step(model, idx, sign, label)
            opt.step()
            step += 1
            streak = streak + 1 if acc == 1.0 else 0
            if streak >= CONVERGED_AFTER:
                converged_at = step
            rec = dict(step=step, loss=loss, acc=acc, seconds=time.perf_counter() - start)
            write(rec)
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{acc:.2f}")
            if step % args.checkpoint_every == 0 or converged_at is not None:
                save()
        if step % args.checkpoint_every and converged_at is None:
            save()  # a budget ended the run between checkpoints
    finally:
        os.close(log)
        if bar:
            bar.close()
    summary = dict(
        settings(args),
        out=str(out),
        steps=step,
        seconds=time.perf_counter() - start,
        converged=converged_at is not None,
        converged_at=converged_at,
    )
    atomic.write_json(out / "summary.json", summary, indent=1)
    return summary


def _append(fd: int, path: Path, data: bytes) -> None:
    """Append ``data`` to ``path``, open as ``fd``, whole: a short write is continued; on an error
    (a full disk) the part written is cut off again, and the OSError names ``path``."""
    size = os.fstat(fd).st_size
    rest = memoryview(data)
    try:
        while rest:
            written = os.write(fd, rest)
            if written <= 0:
                raise OSError(errno.EIO, "the file system took no byte of a write")
            rest = rest[written:]
    except OSError as e:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise OSError(
            e.errno, f"{e.strerror or e} (the metrics line being appended was removed)", str(path)
        ) from None


def _step(model, idx, sign, label) -> tuple[float, float]:
    """Forward and backward of one minibatch on this process: (loss, accuracy)."""
    logits = model(idx, sign)
    loss = F.cross_entropy(logits, label)
    loss.backward()
    return loss.item(), (logits.argmax(-1) == label).float().mean().item()


def _truncate_metrics(path: Path, step: int):
    """Keep what the checkpoint at ``step`` covers: metric lines up to ``step`` and events before
    it (later ones are redone); a damaged line (one that is not UTF-8, JSON or a record, as a crash
    of an older lrbench or a bad disk leaves) goes too, with a warning naming it."""
    if not path.exists():
        return
    keep = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if not line.strip():
            continue
        why = None
        try:
            rec = json.loads(line.decode("utf-8"))
            if rec["step"] < step or (rec["step"] == step and "event" not in rec):
                keep.append(line + b"\n")
        except UnicodeDecodeError as e:
            why = f"not UTF-8: byte 0x{line[e.start]:02x} at column {e.start + 1}"
        except ValueError:
            why = "not JSON"
        except (KeyError, TypeError, IndexError):
            why = "not a metrics record"
        if why:
            print(f"warning: {path} line {number}: damaged ({why}); dropped", file=sys.stderr)
    atomic.write(path, lambda f: f.write(b"".join(keep)))
