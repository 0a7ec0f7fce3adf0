"""``lrbench train`` under faults: two runs on one folder, a full disk, a damaged metrics line,
huge option values, damaged checkpoint contents, file modes, and sequence-parallel ranks whose
checkpoints differ."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lrbench import atomic, checkpoint, cli
from lrbench.options import Failure
from lrbench import train as train_module
from lrbench.train import parser, train
from test_train import TINY  # the same tiny model

ROOT = Path(__file__).resolve().parent.parent


def _args(out, *extra):
    return parser().parse_args(["--out", str(out), "--quiet", *TINY, *extra])


def _steps(out: Path) -> list[int]:
    """The metric lines' steps, every line parsed strictly (a torn line fails here)."""
    text = (out / "metrics.jsonl").read_text()
    assert text == "" or text.endswith("\n"), "torn last line"
    return [r["step"] for r in map(json.loads, text.splitlines()) if "event" not in r]


# --- one run per folder ---------------------------------------------------------------------------


def test_a_second_run_on_a_busy_folder_fails_at_once_naming_it_and_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    train(_args(out, "--max-steps", "2"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    endless = ["--resume", "--max-steps", "100000000", "--checkpoint-every", "1000000"]
    holder = subprocess.Popen(
        [sys.executable, "-m", "lrbench", "train", *TINY, "--out", str(out), *endless],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        lines = len(_steps(out))
        deadline = time.monotonic() + 120
        while len((out / "metrics.jsonl").read_bytes().splitlines()) <= lines + 1:  # it trains
            assert holder.poll() is None and time.monotonic() < deadline, holder.stderr.read()
            time.sleep(0.02)
        for again in (["--resume"], ["--overwrite"], []):
            capsys.readouterr()
            began = time.monotonic()
            rc = cli.main(["train", *TINY, "--out", str(out), "--max-steps", "5", *again])
            err = capsys.readouterr().err
            assert rc == 1 and time.monotonic() - began < 10, (again, err)
            assert err == (
                f"lrbench train: error: --out {out}: another lrbench train "
                f"(pid {holder.pid}) is running there; wait for it to end or use "
                f"another folder\n"
            ), err
        assert holder.poll() is None and not (out / "overwritten-1").exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stderr.close()
    assert len(_steps(out)) > lines  # only the holder wrote, and nothing was torn
    train(_args(out, "--max-steps", "1", "--overwrite"))  # a killed holder leaves no lock
    assert not (out / train_module.LOCK).exists()


def test_the_lock_is_released_and_removed_when_a_run_fails(tmp_path):
    train(_args(tmp_path, "--max-steps", "2"))
    with pytest.raises(Failure, match="already holds a run"):
        train(_args(tmp_path, "--max-steps", "2"))
    assert not (tmp_path / train_module.LOCK).exists()
    train(_args(tmp_path, "--max-steps", "3", "--resume"))


# --- a full disk ----------------------------------------------------------------------------------


def _metrics_fd(fd: int) -> bool:
    return os.readlink(f"/proc/self/fd/{fd}").endswith("metrics.jsonl")


def test_short_writes_of_metrics_lines_are_completed(tmp_path, monkeypatch):
    real = os.write

    def write(fd, data):
        return real(fd, bytes(data)[:7] if _metrics_fd(fd) else data)  # 7 bytes at most

    monkeypatch.setattr(os, "write", write)
    train(_args(tmp_path, "--max-steps", "4"))
    assert _steps(tmp_path) == [1, 2, 3, 4]


def test_a_full_disk_leaves_no_torn_line_and_names_the_file(tmp_path, monkeypatch):
    real, calls = os.write, []

    def write(fd, data):
        if _metrics_fd(fd) and (calls or bytes(data).startswith(b'{"step": 3,')):
            calls.append(1)
            if len(calls) == 1:
                return real(fd, bytes(data)[:10])  # a short write, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OSError) as e:
        train(_args(tmp_path, "--max-steps", "6"))
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "metrics.jsonl")
    monkeypatch.undo()
    assert _steps(tmp_path) == [1, 2]
    train(_args(tmp_path, "--max-steps", "4", "--resume"))
    assert _steps(tmp_path) == [1, 2, 3, 4]


# --- a damaged metrics line -----------------------------------------------------------------------


def test_resume_drops_a_metrics_line_that_is_not_utf8_with_a_warning(tmp_path, capsys):
    train(_args(tmp_path, "--max-steps", "6", "--checkpoint-every", "3"))
    path = tmp_path / "metrics.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1][:5] + b"\xff" + lines[1][6:]
    path.write_bytes(b"".join(lines))
    capsys.readouterr()
    train(_args(tmp_path, "--max-steps", "8", "--checkpoint-every", "3", "--resume"))
    err = capsys.readouterr().err
    assert f"warning: {path} line 2: damaged" in err and "dropped" in err, err
    assert _steps(tmp_path) == [1, 3, 4, 5, 6, 7, 8]


# --- huge values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--T", "100000000000000000000"),
        ("--seed", "100000000000000000000000"),
        ("--forget-bias", "1e308"),
        ("--forget-bias", "-1e300"),
        ("--p", "10000000000000"),
        ("--hidden", "10000000000000"),
        ("--layers", "100000000000"),
        ("--batch", "10000000000000"),
        ("--qrnn-k", "100000000000000000000"),
    ],
)
def test_huge_values_are_refused_by_the_parser_in_one_line(tmp_path, capsys, flag, value):
    try:
        rc = cli.main(
            ["train", *TINY, "--out", str(tmp_path / "out"), "--max-steps", "1", f"{flag}={value}"]
        )
    except SystemExit as e:  # argparse's exit
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("usage: lrbench train"), err
    assert err.splitlines()[-1].startswith(f"lrbench train: error: argument {flag}: must be "), err
    assert f"got '{value}'" in err and not (tmp_path / "out").exists()


def test_the_largest_seed_is_accepted(tmp_path):
    biggest = next(a for a in parser()._actions if a.dest == "seed").type.max
    train(_args(tmp_path, "--max-steps", "1", "--seed", str(biggest)))
    assert checkpoint.load(tmp_path / checkpoint.NAME)["settings"]["seed"] == biggest


# --- damaged checkpoint contents ------------------------------------------------------------------


def _rewrite(path: Path, **change):
    state = checkpoint.load(path)
    state.update(change)
    path.write_bytes(checkpoint.dumps(state))


def test_settings_of_the_wrong_type_are_a_damaged_checkpoint(tmp_path, capsys):
    train(_args(tmp_path, "--max-steps", "6", "--checkpoint-every", "3"))
    _rewrite(tmp_path / checkpoint.NAME, settings=[["lr", 0.003]])
    train(_args(tmp_path, "--max-steps", "7", "--checkpoint-every", "3", "--resume"))
    err = capsys.readouterr().err
    assert "checkpoint.pt: damaged ('settings' is a list, not a dict)" in err, err
    assert "resuming from checkpoint.prev.pt (step 3)" in err
    for name in (checkpoint.NAME, checkpoint.PREVIOUS):
        _rewrite(tmp_path / name, settings=["x"])
    twice = r"no usable checkpoint.*'settings' is a list.*'settings' is a list"
    with pytest.raises(Failure, match=twice):
        train(_args(tmp_path, "--max-steps", "8", "--resume"))


# --- file modes -----------------------------------------------------------------------------------


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(out: Path) -> dict[str, str]:
    return {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in out.iterdir() if p.is_file()}


def test_fresh_and_resumed_runs_write_files_with_the_same_modes(tmp_path, umask_022):
    train(_args(tmp_path, "--max-steps", "4", "--checkpoint-every", "2"))
    fresh = _modes(tmp_path)
    names = ["checkpoint.pt", "checkpoint.prev.pt", "metrics.jsonl", "summary.json"]
    assert fresh == dict.fromkeys(names, "0o644"), fresh
    train(_args(tmp_path, "--max-steps", "6", "--checkpoint-every", "2", "--resume"))
    assert _modes(tmp_path) == fresh


def test_atomic_writes_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic.write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640


# --- sequence parallel: the ranks resume at the same step -----------------------------------------

SP = [
    "--model",
    "gilr",
    "--T",
    "9",
    "--p",
    "4",
    "--hidden",
    "4",
    "--layers",
    "1",
    "--batch",
    "2",
    "--scan-backend",
    "cpu-serial",
    "--dtype",
    "float64",
    "--quiet",
    "--checkpoint-every",
    "4",
]


def _torchrun(out: Path, *extra) -> subprocess.CompletedProcess:
    from lrbench.distributed import free_port

    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(free_port()),
            "-m",
            "lrbench",
            "train",
            "--sequence-parallel",
            *SP,
            "--out",
            str(out),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sequence_parallel_ranks_resume_from_the_newest_step_they_all_hold(tmp_path):
    """Rank 1's newest checkpoint is damaged: every rank resumes from the previous step, trains
    the same steps on the same weights, and both ranks end with the same checkpoint."""
    out = tmp_path / "sp"
    train(parser().parse_args([*SP, "--out", str(out), "--max-steps", "8"]))  # steps 4 and 8
    (out / "rank1").mkdir()
    for name in ("metrics.jsonl", checkpoint.NAME, checkpoint.PREVIOUS):
        shutil.copy(out / name, out / "rank1" / name)
    (out / "rank1" / checkpoint.NAME).write_bytes(b"")
    run = _torchrun(out, "--max-steps", "10", "--resume")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "resuming from checkpoint.prev.pt (step 4)" in run.stderr, run.stderr[-3000:]
    assert _steps(out) == _steps(out / "rank1") == list(range(1, 11))
    a, b = checkpoint.load(out / checkpoint.NAME), checkpoint.load(out / "rank1" / checkpoint.NAME)
    assert a["step"] == b["step"] == 10
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_the_newest_common_step_of_the_ranks():
    from lrbench.distributed.training import newest_common_step

    assert newest_common_step([[8, 4], [4]]) == 4
    assert newest_common_step([[8, 4], [8, 4], [12, 8]]) == 8
    assert newest_common_step([[8, 4], []]) is None
    assert newest_common_step([[8], [4]]) is None


def test_ranks_without_a_common_step_all_fail_saying_what_each_holds(monkeypatch):
    from lrbench.distributed import training

    seqpar = training.SequenceParallel.__new__(training.SequenceParallel)
    seqpar.world = 3
    held = [
        ([8, 4], []),
        ([8], ["r1/checkpoint.prev.pt: missing"]),
        ([], ["r2: empty", "r2p: missing"]),
    ]

    def all_gather_object(into, mine):
        into[:] = held

    monkeypatch.setattr(training.dist, "all_gather_object", all_gather_object)
    with pytest.raises(Failure) as e:
        seqpar.common_step([8, 4], [])
    assert str(e.value) == (
        "--resume: no checkpoint step that every rank can load (rank 0: steps 8, 4; "
        "rank 1: step 8 (r1/checkpoint.prev.pt: missing); "
        "rank 2: none (r2: empty; r2p: missing))"
    )
    held[1:] = [([8, 4], []), ([4], ["r2: empty"])]
    assert seqpar.common_step([8, 4], []) == 4


def test_sequence_parallel_a_start_refused_on_one_rank_is_refused_on_every_rank(tmp_path):
    """Rank 0's --out holds an earlier run (no --overwrite), rank 1's is empty: before, rank 0
    raised alone and rank 1 waited in the first exchange for gloo's 30-minute timeout; now every
    rank ends at once with the same one-line error."""
    out = tmp_path / "sp"
    train(parser().parse_args([*SP, "--out", str(out), "--max-steps", "2"]))
    (out / "rank1").mkdir()
    run = _torchrun(out, "--max-steps", "4")
    assert run.returncode != 0
    # both ranks print it (torchrun may interleave their lines)
    assert run.stderr.count("error: rank 0: --out") >= 2, run.stderr[-3000:]
