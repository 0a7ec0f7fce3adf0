"""``lrbench train``: learns a short problem 2b on the CPU; nothing is lost when a run is killed,
re-run, resumed with other settings or given a damaged checkpoint."""

from __future__ import annotations

import json
import multiprocessing
import random
import time
from pathlib import Path

import pytest
import torch

from lrbench import checkpoint
from lrbench.cli import main
from lrbench.options import Failure
from lrbench.train import parser, train

ROOT = Path(__file__).resolve().parent.parent
# A model small enough that a step costs a few ms: what is tested is the bookkeeping around it.
TINY = [
    "--model",
    "gilr",
    "--T",
    "8",
    "--p",
    "4",
    "--hidden",
    "4",
    "--layers",
    "1",
    "--batch",
    "2",
    "--scan-backend",
    "torch-loop",
    "--quiet",
]


def _args(tmp, *extra):
    return parser().parse_args(["--out", str(tmp), "--quiet", *extra])


def _records(out: Path) -> list[dict]:
    """Every line of metrics.jsonl, parsed strictly (a torn line or NaN fails here)."""
    text = (out / "metrics.jsonl").read_text()
    assert text == "" or text.endswith("\n"), "torn last line"
    return [
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
        for line in text.splitlines()
    ]


def _metrics(out: Path) -> list[dict]:
    return [r for r in _records(out) if "event" not in r]


def test_learns_T64_on_cpu(tmp_path):
    s = train(
        _args(
            tmp_path,
            "--model",
            "gilr-lstm",
            "--T",
            "64",
            "--p",
            "8",
            "--hidden",
            "16",
            "--batch",
            "16",
            "--lr",
            "1e-2",
            "--max-steps",
            "400",
            "--scan-backend",
            "cpu-serial",
        )
    )
    assert s["converged"], s
    lines = _metrics(tmp_path)
    assert len(lines) == s["steps"] and all(r["acc"] == 1.0 for r in lines[-5:])
    assert json.loads((tmp_path / "summary.json").read_text())["converged_at"] == s["steps"]


def _final(out):
    ck = checkpoint.load(out / checkpoint.NAME)
    return ck["step"], ck["model"]


def _run_cli(argv):
    """The child of the SIGKILL test: the ``lrbench`` command's own entry point, in its own process."""
    import sys

    sys.exit(main(argv))


def test_sigkill_at_20_random_moments_loses_at_most_one_interval(tmp_path):
    """A real ``lrbench train`` process is killed with SIGKILL 20 times, at random moments (during
    start-up, resuming, stepping or checkpointing) and resumed each time. After every kill each
    metrics line parses, the steps run 1, 2, ... without a gap or a repeat, and the newest
    checkpoint is at most one interval behind the last line; the finished run equals, bitwise, an
    uninterrupted one, metrics included.

    The processes are forked from a server that has imported torch once (forkserver), so each
    costs milliseconds to start rather than seconds; they run ``lrbench.cli.main`` like the
    installed command and the first is the installed command itself."""
    every = 4
    # batch 16: a run of 5 all-correct batches by chance (a stop) is then out of reach (2^-80)
    common = [
        "train",
        *TINY,
        "--batch",
        "16",
        "--optimizer",
        "sgd",
        "--lr",
        "1e-6",
        "--checkpoint-every",
        str(every),
    ]
    cut = tmp_path / "cut"
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["lrbench.cli", "lrbench.train", "torch._dynamo", "tqdm"])
    rng = random.Random(16)
    newest = 0
    for kill in range(20):
        argv = [*common, "--out", str(cut), "--max-steps", "1000000"] + (
            ["--resume"] if kill else []
        )
        if kill == 0:
            import subprocess
            import sys

            proc = subprocess.Popen([sys.executable, "-m", "lrbench", *argv], cwd=ROOT)
            stop, alive = proc.kill, lambda: proc.poll() is None
        else:
            proc = ctx.Process(target=_run_cli, args=(argv,))
            proc.start()
            stop, alive = proc.kill, proc.is_alive
        start, lines = (
            time.perf_counter(),
            (len(_records(cut)) if (cut / "metrics.jsonl").exists() else 0),
        )
        if rng.random() < 0.25:  # any moment, start-up and resuming included
            time.sleep(rng.uniform(0.0, 0.3))
        else:  # a moment while it steps and checkpoints
            while alive() and time.perf_counter() - start < 60:
                if (cut / "metrics.jsonl").exists() and len(
                    (cut / "metrics.jsonl").read_bytes().splitlines()
                ) > lines:
                    break
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.15))
        assert alive(), "the run ended before it was killed"
        stop()
        proc.wait() if kill == 0 else proc.join()
        if not (cut / "metrics.jsonl").exists():
            continue  # killed before its first checkpoint
        steps = [r["step"] for r in _metrics(cut)]
        assert steps == list(range(1, len(steps) + 1)), f"kill {kill}: steps torn or repeated"
        state, path, _ = checkpoint.load_newest(cut)
        assert state["step"] >= newest, f"kill {kill}: a checkpoint went back"
        assert len(steps) - state["step"] <= every, (
            f"kill {kill}: more than one interval would be lost"
        )
        newest = state["step"]
    assert newest >= 2 * every  # the kills landed while it trained

    total = newest + 3
    assert main([*common, "--out", str(cut), "--max-steps", str(total), "--resume"]) == 0
    whole = tmp_path / "whole"
    assert main([*common, "--out", str(whole), "--max-steps", str(total)]) == 0
    (step_a, a), (step_b, b) = _final(whole), _final(cut)
    assert step_a == step_b == total
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bitwise the same run
    strip = lambda rs: [(r["step"], r["loss"], r["acc"]) for r in rs]
    assert strip(_metrics(cut)) == strip(_metrics(whole))


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(Failure, match="no checkpoint"):
        train(_args(tmp_path, "--resume"))


def test_an_existing_run_is_kept_unless_resumed_or_moved_aside(tmp_path):
    first = train(_args(tmp_path, *TINY, "--max-steps", "3"))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(Failure, match="already holds a run.*--resume.*--overwrite"):
        train(_args(tmp_path, *TINY, "--max-steps", "5"))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing touched
    train(_args(tmp_path, *TINY, "--max-steps", "2", "--overwrite"))
    assert {p.name: p.read_bytes() for p in (tmp_path / "overwritten-1").iterdir()} == before
    assert len(_metrics(tmp_path)) == 2 and first["steps"] == 3
    train(_args(tmp_path, *TINY, "--max-steps", "1", "--overwrite"))
    assert (tmp_path / "overwritten-2" / "metrics.jsonl").exists()


@pytest.mark.parametrize(
    "flag, stored, value",
    [
        ("--model", "gilr", "sru"),
        ("--hidden", 4, "5"),
        ("--T", 8, "9"),
        ("--seed", 0, "3"),
        ("--batch", 2, "3"),
        ("--optimizer", "adam", "sgd"),
    ],
)
def test_resume_refuses_another_model_shape_or_task(tmp_path, flag, stored, value):
    train(_args(tmp_path, *TINY, "--max-steps", "2"))
    with pytest.raises(Failure, match=f"run with {flag} {stored}, not {flag} {value}"):
        train(_args(tmp_path, *TINY, "--max-steps", "4", "--resume", flag, value))
    assert len(_metrics(tmp_path)) == 2


def test_resume_applies_and_records_a_new_learning_rate_and_budget(tmp_path):
    train(_args(tmp_path, *TINY, "--max-steps", "6", "--checkpoint-every", "3"))
    s = train(
        _args(
            tmp_path,
            *TINY,
            "--max-steps",
            "9",
            "--checkpoint-every",
            "3",
            "--lr",
            "0.05",
            "--resume",
        )
    )
    ck = checkpoint.load(tmp_path / checkpoint.NAME)
    assert ck["step"] == 9 and [g["lr"] for g in ck["optimizer"]["param_groups"]] == [0.05]
    assert s["lr"] == 0.05 and json.loads((tmp_path / "summary.json").read_text())["lr"] == 0.05
    events = [r for r in _records(tmp_path) if "event" in r]
    assert events == [
        dict(
            step=6,
            event="resume",
            checkpoint="checkpoint.pt",
            changed={"lr": [0.003, 0.05], "max_steps": [6, 9]},
        )
    ]
    # The new rate was used: the same resume at the old rate ends elsewhere.
    other = tmp_path / "other"
    train(_args(other, *TINY, "--max-steps", "6", "--checkpoint-every", "3"))
    train(_args(other, *TINY, "--max-steps", "9", "--checkpoint-every", "3", "--resume"))
    assert not torch.equal(
        checkpoint.load(other / checkpoint.NAME)["model"]["readout.weight"],
        ck["model"]["readout.weight"],
    )


def _corrupt(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "corrupt": _corrupt,
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:-100]),
    "missing": Path.unlink,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_newest_checkpoint_is_reported_and_the_previous_one_used(
    tmp_path, capsys, damage
):
    train(_args(tmp_path, *TINY, "--max-steps", "6", "--checkpoint-every", "3"))
    DAMAGE[damage](tmp_path / checkpoint.NAME)
    s = train(_args(tmp_path, *TINY, "--max-steps", "8", "--checkpoint-every", "3", "--resume"))
    assert "resuming from checkpoint.prev.pt (step 3)" in capsys.readouterr().err
    assert s["steps"] == 8 and [r["step"] for r in _metrics(tmp_path)] == list(range(1, 9))
    DAMAGE[damage](tmp_path / checkpoint.NAME)
    DAMAGE["truncated"](tmp_path / checkpoint.PREVIOUS)
    with pytest.raises(
        Failure,
        match="no usable checkpoint.*checkpoint.pt.*checkpoint.prev.pt: corrupt or truncated",
    ):
        train(_args(tmp_path, *TINY, "--max-steps", "8", "--resume"))


def test_summary_and_metrics_are_strict_json_even_when_the_loss_diverges(tmp_path):
    train(_args(tmp_path, *TINY, "--max-steps", "3", "--optimizer", "sgd", "--lr", "1e30"))
    summary = json.loads((tmp_path / "summary.json").read_text(), parse_constant=pytest.fail)
    assert summary["max_seconds"] is None and "nonfinite" not in summary
    diverged = _records(tmp_path)[-1]  # parsed strictly
    assert diverged["loss"] is None and diverged["nonfinite"] == {"loss": "nan"}


def test_strict_json_writes_null_and_says_which_value_was_not_finite():
    from lrbench.atomic import dumps

    text = dumps({"a": float("inf"), "b": [1.0, float("nan")], "c": {"d": -float("inf")}, "e": 2})
    assert json.loads(text) == {
        "a": None,
        "b": [1.0, None],
        "c": {"d": None},
        "e": 2,
        "nonfinite": {"a": "inf", "b[1]": "nan", "c.d": "-inf"},
    }


def test_reproduce_table_puts_the_paper_beside_ours(tmp_path):
    import pandas as pd

    from lrbench.reproduce import write

    rows = [
        dict(
            model="gilr-lstm",
            T=1024,
            hidden=64,
            layers=2,
            batch=16,
            lr=0.003,
            forget_bias=8.0,
            seed=s,
            device="cpu",
            steps=steps,
            seconds=secs,
            converged=conv,
        )
        for s, steps, secs, conv in [
            (0, 500, 60.0, True),
            (1, 700, 90.0, True),
            (2, 3000, 480.0, False),
        ]
    ]
    write(pd.DataFrame(rows), tmp_path)
    md = (tmp_path / "table3_T1024.md").read_text()
    assert "| gilr-lstm | 3 | 2 | 600 |" in md  # mean of the converged runs
    assert "3000" in md and "0.55" in md and "0.031" in md  # the unconverged run; the paper's
    assert "| 0.003 | 8 | 0 |" in md  # lr and forget bias, not rounded away
    assert len(pd.read_csv(tmp_path / "table3_T1024.csv")) == 3


def test_reproduce_runs_and_resumes_each_model_and_seed(tmp_path, capsys):
    argv = [
        "reproduce-2b",
        "--models",
        "gilr",
        "--seeds",
        "0",
        "--T",
        "8",
        "--hidden",
        "4",
        "--layers",
        "1",
        "--batch",
        "2",
        "--max-steps",
        "3",
        "--runs",
        str(tmp_path / "runs"),
        "--results",
        str(tmp_path / "res"),
    ]
    assert main(argv) == 0
    assert main(argv) == 0  # finished runs are read, not redone
    assert capsys.readouterr().out.count("gilr seed 0: 3 steps") == 2
    assert len(list((tmp_path / "runs").iterdir())) == 1
