"""The second seed-000 round: the adding problem, batches from fixed sets or fresh sequences, the
hybrid's sweep count, the table-against-roll-out drift, the validation-only choice of rate, the
intervals, and the quick preset end to end (the CI run of the new experiments)."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch

from lrbench import cli
from experiments.seed000 import methods, round2, round2_report, tasks
from experiments.seed000.cells import GRUCell, TanhCell, roll_out


@pytest.mark.parametrize("N", [2, 3, 10, 33, 1000])
def test_adding_problem_marks_two_values_and_sums_them(N):
    x, y = tasks.data_adding(257, N, 0)
    assert x.shape == (257, N, 2) and y.shape == (257,)
    marker = x[..., 1]
    assert torch.equal(marker.sum(1), torch.full((257,), 2.0))
    first = marker.argmax(1)
    second = N - 1 - marker.flip(1).argmax(1)
    assert (first < max(N // 10, 1)).all() and (second >= N // 2).all() and (second > first).all()
    assert torch.allclose((x[..., 0] * marker).sum(1), y)
    assert ((x[..., 0] >= 0) & (x[..., 0] < 1)).all()
    assert torch.equal(tasks.data_adding(257, N, 0)[0], x)  # seeded
    with pytest.raises(ValueError, match="argument 'N'.*got 1"):
        tasks.data_adding(4, 1, 0)


def test_adding_correct_is_the_tolerance_and_a_constant_guess_rarely_is():
    task = tasks.make("adding")
    _, y = task.sample(4096, 50, 1)
    guess = torch.ones(4096, 1)
    rate = task.correct(guess, y).float().mean().item()
    assert 0.02 < rate < 0.12  # a triangle of width 2 around 1
    assert (
        task.correct(y[:, None] + 0.039, y).all() and not task.correct(y[:, None] + 0.041, y).any()
    )
    with pytest.raises(ValueError, match="argument 'task'"):
        tasks.make("copy")


def _method(kind, **kw):
    torch.manual_seed(0)
    x, y = tasks.data_2b(64, 6, 4, 0)
    return methods.make(kind, TanhCell(4, 8), 8, x, y, 0.01, **kw)


def test_fresh_batches_are_new_every_step_and_seeded():
    draws = []
    fresh = lambda seed: (draws.append(seed), tasks.data_2b(16, 6, 4, seed))[1]
    a = _method("bptt", fresh=fresh, batch=16, seed=3)
    b1, b2 = a.next_batch(), a.next_batch()
    assert b1[0] is None and not torch.equal(b1[1], b2[1]) and len(set(draws)) == 2
    b = _method("bptt", fresh=fresh, batch=16, seed=3)
    assert torch.equal(b.next_batch()[1], b1[1])  # the same seed, the same batches
    c = _method("bptt", fresh=fresh, batch=16, seed=4)
    assert not torch.equal(c.next_batch()[1], b1[1])  # another seed, another stream
    # the round's fresh batches never reuse the seed of a training, validation or test set
    cfg = dict(round2.PRESETS["round2"], batch=4, val=4, test=4)
    config = round2.Config("fair", "2b", "gru", "bptt", "fresh")
    for seed in range(5):
        (x, _), (vx, _), (tx, _), fresh = round2._sets(tasks.make("2b"), cfg, config, 12, seed)
        m = methods.make(
            "bptt",
            GRUCell(8, 4),
            4,
            x,
            torch.zeros(4, dtype=torch.long),
            0.01,
            fresh=fresh,
            batch=4,
            seed=seed,
        )
        for _ in range(3):
            bx = m.next_batch()[1]
            assert not any(torch.equal(bx, other) for other in (x, vx, tx))


def test_fixed_set_batches_are_subsets_and_count_epochs():
    m = _method("bptt", batch=16, seed=1)
    ids, x, y = m.next_batch()
    assert len(ids) == 16 == len(set(ids.tolist())) and (ids < 64).all()
    assert torch.equal(x, m.x[ids]) and torch.equal(y, m.y[ids]) and m.epochs_per_step == 0.25
    full = _method("bptt", batch=512)
    assert torch.equal(full.next_batch()[0], torch.arange(64)) and full.epochs_per_step == 1.0
    with pytest.raises(ValueError, match="argument 'fresh'"):
        _method("hybrid", fresh=lambda s: tasks.data_2b(16, 6, 4, s))


def test_hybrid_sweeps_converge_to_the_roll_out_and_touch_only_the_batch():
    torch.manual_seed(0)
    x, y = tasks.data_2b(32, 20, 4, 0)
    rows = lambda m: (
        m.model.table - roll_out(m.cell, x.transpose(0, 1), torch.zeros(32, 8)).transpose(0, 1)
    ).abs()
    gaps = {}
    for sweeps in (0, 1, 2, methods.CONVERGE):
        torch.manual_seed(0)
        m = methods.make(
            "hybrid", TanhCell(4, 8), 8, x, y, 0.0, sweeps=sweeps
        )  # lr 0: only sweeps move it
        before = m.model.table.detach().clone()
        m.step()
        gaps[sweeps] = rows(m).max().item()
        if sweeps == 0:
            assert torch.equal(m.model.table, before)
    assert gaps[methods.CONVERGE] < 1e-5 < gaps[2] < gaps[1] < gaps[0]
    assert m.extras()["sweeps_per_step"] > 2
    torch.manual_seed(0)
    m = methods.make(
        "hybrid", TanhCell(4, 8), 8, x, y, 0.0, sweeps=methods.CONVERGE, batch=8, seed=2
    )
    before = m.model.table.detach().clone()
    m.step()
    moved = (m.model.table != before).flatten(1).any(1)
    assert moved.sum() == 8 and (rows(m)[moved].max() < 1e-5)


def test_drift_is_zero_on_the_roll_out_and_sees_a_perturbed_state():
    torch.manual_seed(0)
    x, y = tasks.data_2b(16, 9, 4, 0)
    m = methods.make("hybrid", GRUCell(4, 8), 8, x, y, 0.0)
    with torch.no_grad():
        m.model.table.copy_(roll_out(m.cell, x.transpose(0, 1), torch.zeros(16, 8)).transpose(0, 1))
    assert m.model.drift(x)[0] < 1e-6
    with torch.no_grad():
        m.model.table[3, 5, 1] += 0.5
    big, mean = m.model.drift(x)
    assert abs(big - 0.5) < 1e-5 and mean == pytest.approx(0.5 / m.model.table.numel(), rel=1e-3)


def test_the_rate_is_chosen_on_validation_never_on_test(tmp_path):
    store = round2.Store(tmp_path, "t")
    c = round2.Config("fair", "2b", "gru", "bptt", "fresh")
    row = lambda lr, seed, solved, steps, val, test: dict(
        asdict(c),
        N=8,
        seed=seed,
        lr=lr,
        solved=solved,
        steps=steps,
        stopped_by="solved" if solved else "steps",
        val_acc=val,
        test_acc=test,
    )
    store.runs = pd.DataFrame(
        [
            row(0.01, 0, True, 100, 0.99, 1.0),
            row(0.02, 0, True, 50, 0.99, 0.5),
            row(0.05, 0, False, 400, 0.9, 1.0),
            row(0.02, 1, False, 400, 0.1, 0.1),
        ]
    )
    assert store.chosen_lr(c, 8, [0]) == 0.02  # fewest steps; its test score is 0.5
    store.runs = pd.DataFrame(
        [row(0.01, 0, False, 400, 0.6, 0.9), row(0.05, 0, False, 400, 0.8, 0.5)]
    )
    assert store.chosen_lr(c, 8, [0]) == 0.05  # else the best validation accuracy
    assert store.chosen_lr(c, 16, [0]) is None
    assert (
        store.solved_any(c, 8) is False
        and store.has(c, 8, 0, 0.05)
        and not store.has(c, 8, 1, 0.05)
    )


def test_intervals():
    assert round2_report.wilson(3, 3)[0] == pytest.approx(0.4385, abs=1e-4)
    lo, hi = round2_report.wilson(0, 5)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.4345, abs=1e-4)
    assert round2_report.geo_ci([10, 10, 10]) == "10 [10, 10]" and round2_report.geo_ci([7]) == "7"
    assert round2_report.geo_ci([10, 20, 40]) == "20 [4, 112]"  # t with 2 degrees of freedom: 4.303
    rng = np.random.default_rng(0)
    N = np.repeat([16, 32, 64, 128], 5)
    g = pd.DataFrame(
        dict(
            N=N, steps=np.round(3 * N**0.7 * np.exp(0.1 * rng.standard_normal(len(N)))), solved=True
        )
    )
    fit = round2_report.alpha_fit(g)
    lo, hi = map(float, fit["ci"].strip("[]").split(","))
    assert lo < 0.7 < hi and hi - lo < 0.2 and fit["lags"] == 4 and fit["runs"] == 20
    assert round2_report.alpha_fit(g[g.N == 16]) is None
    assert math.isnan(round2_report.wilson(0, 0)[0])


def test_quick_preset_runs_every_stage_resumes_and_reports(tmp_path, capsys):
    """The CI run of the second round: every stage, then timing, the summary and the charts; a
    second call finds nothing left to run and leaves the runs untouched."""
    assert (
        cli.main(["seed000", "--preset", "round2-quick", "--jobs", "2", "--out", str(tmp_path)])
        == 0
    )
    runs = pd.read_csv(tmp_path / "runs_round2-quick.csv")
    assert set(runs.stage) == {
        "fair",
        "ablate",
        "table",
        "drift",
        "adding",
        "budget",
        "edge",
        "long",
    }
    assert set(runs[runs.stage == "edge"].lr) == {0.1} and set(runs[runs.stage == "edge"].seed) == {
        0,
        1,
    }
    table = runs[runs.stage == "table"]
    assert (
        (table.stopped_by != "skipped").all()
        and set(table.N) == {4, 8}
        and set(table.cell) == {"tanh", "gru"}
    )
    budget = runs[runs.stage == "budget"]
    assert set(budget.max_steps.dropna()) == {5 * 30} and set(budget.lr) == {0.01, 0.03}
    assert set(runs[runs.stage == "adding"].max_steps.dropna()) == {40}
    assert set(runs[runs.stage == "fair"].data) == {"fresh", "M=32", "M=64"}
    assert set(runs[(runs.stage == "fair") & (runs.method == "deer")].lr) == {0.01, 0.03}
    assert "deer" not in set(runs[runs.stage == "long"].method)
    assert set(runs.stopped_by) <= {"solved", "steps", "time", "skipped"}
    ran = runs[runs.stopped_by != "skipped"]
    assert ran.test_acc.between(0, 1).all() and (ran.depth_per_step > 0).all()
    chosen = runs[(runs.stage == "fair") & (runs.seed == 1) & (runs.stopped_by != "skipped")]
    assert set(chosen.lr) <= {0.01, 0.03} and not chosen.empty
    trace = pd.read_csv(tmp_path / "trace_round2-quick.csv")
    assert set(trace.stage) == {"ablate", "drift"} and (trace.drift_max >= trace.drift_mean).all()
    assert trace.table_front.between(0, 4).all() and trace.rollout_front.between(0, 4).all()
    timing = pd.read_csv(tmp_path / "timing_round2-quick.csv")
    assert (timing[["ms_1_thread", "ms_2_threads", "ms_1_thread_flushed"]] > 0).all().all()
    sweeping = timing.method.isin(["hybrid", "deer"])
    assert (timing[sweeping].scan_ms_1_thread > 0).all() and timing[
        ~sweeping
    ].scan_ms_1_thread.isna().all()
    summary = (tmp_path / "summary_round2-quick.md").read_text()
    for title in (
        "learning-rate sweep",
        "DEER against BPTT",
        "Hybrid ablations",
        "adding problem",
        "longer budget",
        "Longer lags",
        "Time per step",
    ):
        assert title in summary
    for chart in ("steps_vs_lag", "ms_per_step", "drift"):
        assert (tmp_path / f"{chart}_round2-quick.png").stat().st_size > 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert cli.main(["seed000", "--preset", "round2-quick", "--out", str(tmp_path)]) == 0
    assert {
        p.name: p.read_bytes() for p in tmp_path.iterdir()
    } == before  # nothing re-run, same bytes
