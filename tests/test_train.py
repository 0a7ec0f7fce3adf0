"""``lrbench train``: learns a short problem 2b on the CPU; a killed run resumes exactly."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lrbench.cli import main
from lrbench.train import parser, train

ROOT = Path(__file__).resolve().parent.parent


def _args(tmp, *extra):
    return parser().parse_args(["--out", str(tmp), "--quiet", *extra])


def test_learns_T64_on_cpu(tmp_path):
    s = train(_args(tmp_path, "--model", "gilr-lstm", "--T", "64", "--p", "8", "--hidden", "16",
                    "--batch", "16", "--lr", "1e-2", "--max-steps", "400", "--scan-backend", "cpu-serial"))
    assert s["converged"], s
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == s["steps"] and all(r["acc"] == 1.0 for r in lines[-5:])
    assert json.loads((tmp_path / "summary.json").read_text())["converged_at"] == s["steps"]


def _final_params(out):
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    return ck["step"], ck["model"]


def test_killed_run_resumes_where_it_was(tmp_path):
    common = ["--model", "sru", "--T", "300", "--p", "8", "--hidden", "8", "--batch", "4",
              "--max-steps", "60", "--checkpoint-every", "5", "--scan-backend", "cpu-serial",
              "--quiet", "--lr", "1e-3"]
    whole = tmp_path / "whole"
    assert main(["train", "--out", str(whole), *common]) == 0

    cut = tmp_path / "cut"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "lrbench.cli", "train", "--out", str(cut),
                             *common, "--max-steps", "100000"], env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (cut / "checkpoint.pt").exists() and _final_params(cut)[0] >= 15:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _final_params(cut)[0]
    assert 15 <= killed_at < 60, killed_at

    assert main(["train", "--out", str(cut), *common, "--resume"]) == 0
    (step_a, a), (step_b, b) = _final_params(whole), _final_params(cut)
    assert step_a == step_b == 60
    for k in a:
        assert torch.equal(a[k], b[k]), k            # bitwise the same run
    steps = [json.loads(x)["step"] for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 61))


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(_args(tmp_path, "--resume"))


def test_reproduce_table_puts_the_paper_beside_ours(tmp_path):
    import pandas as pd

    from lrbench.reproduce import write
    rows = [dict(model="gilr-lstm", T=1024, hidden=64, layers=2, batch=16, lr=0.003, forget_bias=8.0, seed=s,
                 device="cpu", steps=steps, seconds=secs, converged=conv)
            for s, steps, secs, conv in [(0, 500, 60.0, True), (1, 700, 90.0, True), (2, 3000, 480.0, False)]]
    write(pd.DataFrame(rows), tmp_path)
    md = (tmp_path / "table3_T1024.md").read_text()
    assert "| gilr-lstm | 3 | 2 | 600 |" in md                  # mean of the converged runs
    assert "3000" in md and "0.55" in md and "0.031" in md      # the unconverged run; the paper's
    assert "| 0.003 | 8 | 0 |" in md                             # lr and forget bias, not rounded away
    assert len(pd.read_csv(tmp_path / "table3_T1024.csv")) == 3
