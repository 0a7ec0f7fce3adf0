"""The seed-000 baselines: DEER-style training gives BPTT's gradient, the hybrid's sweep, the
information-front probe, and every method's step on a tiny problem."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from experiments.seed000 import methods
from experiments.seed000.cells import GRUCell, TanhCell, roll_out
from experiments.seed000.deer import deer_backward
from experiments.seed000.experiment import _skip, data
from experiments.seed000.front import front, probe_accuracy

CELLS = {"tanh": TanhCell, "gru": GRUCell}


@pytest.mark.parametrize("T", [1, 2, 31, 33])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_deer_gradient_equals_bptt(name, T):
    torch.manual_seed(T)
    cell, readout = CELLS[name](4, 6).double(), torch.nn.Linear(6, 2).double()
    params = [*cell.parameters(), *readout.parameters()]
    x, h0 = torch.randn(T, 5, 4, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    y = torch.randint(0, 2, (5,))
    ref_loss = F.cross_entropy(readout(roll_out(cell, x, h0)[-1]), y)
    ref = torch.autograd.grad(ref_loss, params)
    for p in params:
        p.grad = torch.ones_like(p)  # it accumulates, like backward()
    loss, fwd, bwd = deer_backward(
        cell, lambda h: F.cross_entropy(readout(h), y), x, h0, tol=1e-12, backend="cpu-serial"
    )
    assert abs(loss.item() - ref_loss.item()) < 1e-12
    assert 1 <= fwd <= T + 1 and 1 <= bwd <= T + 1
    for p, g in zip(params, ref):
        assert torch.isfinite(p.grad).all()
        torch.testing.assert_close(p.grad - 1, g, rtol=1e-9, atol=1e-10)


def test_deer_backward_is_deterministic():
    torch.manual_seed(0)
    cell, readout = TanhCell(3, 4), torch.nn.Linear(4, 2)
    x, y = torch.randn(20, 6, 3), torch.randint(0, 2, (6,))
    grads = []
    for _ in range(2):
        for p in [*cell.parameters(), *readout.parameters()]:
            p.grad = None
        deer_backward(cell, lambda h: F.cross_entropy(readout(h), y), x, torch.zeros(6, 4))
        grads.append([p.grad.clone() for p in cell.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_hybrid_sweep_moves_the_table_toward_the_roll_out():
    torch.manual_seed(0)
    x, y = data(32, 12, 4, 0)
    m = methods.make("hybrid", TanhCell(4, 8), 8, x, y, lr=0.0)  # lr 0: only the sweep moves it
    before = m.model.max_residual(x)
    m.step()
    after = m.model.max_residual(x)
    assert after < 0.8 * before, (before, after)
    ref = roll_out(m.cell, x.transpose(0, 1), torch.zeros(32, 8)).transpose(0, 1)
    assert (
        m.states()[:, 0] - ref[:, 0]
    ).abs().max() < 1e-6  # the first step is exact after one sweep


def test_front_probe():
    torch.manual_seed(0)
    M, N, n = 200, 6, 5
    label = torch.randperm(M) % 2
    states = torch.randn(M, N, n)
    states[:, :3, 0] += 4 * (2 * label[:, None] - 1)  # the sign is in the first 3 steps
    acc = probe_accuracy(states, label)
    assert acc.shape == (N,) and (acc[:3] > 0.95).all() and (acc[3:] < 0.75).all()
    assert front(states, label) == 3
    states[:, 4, 0] += 4 * (2 * label - 1)
    assert front(states, label) == 3  # leading steps only
    with pytest.raises(ValueError, match="'states'"):
        probe_accuracy(states[:, 0], label)
    with pytest.raises(ValueError, match="both classes"):
        probe_accuracy(states, torch.zeros(M, dtype=torch.long))


@pytest.mark.parametrize(
    "method",
    ["table-K1", "table-K4", "table-rand-K1", "hybrid", "deer", "bptt", "tbptt", "tbptt-w4"],
)
def test_every_method_steps_and_scores_by_roll_out(method):
    torch.manual_seed(0)
    x, y = data(16, 9, 4, 0)
    m = methods.make(method, TanhCell(4, 8), 8, x, y, lr=0.01)
    w = m.cell.W.weight.detach().clone()
    for _ in range(2):
        m.step()
    assert not torch.equal(w, m.cell.W.weight)
    assert m.states().shape == (16, 9, 8)
    logits = m.logits(x)
    assert logits.shape == (16, 2) and torch.isfinite(logits).all()
    if hasattr(m, "model"):
        torch.testing.assert_close(logits, m.model.roll_out_logits(x))


def test_unknown_method_and_skip_rule():
    import pandas as pd

    with pytest.raises(ValueError, match="argument 'method'"):
        methods.make("adjoint", TanhCell(2, 2), 2, *data(2, 3, 2, 0), lr=0.1)
    df = pd.DataFrame(
        [
            dict(method="a", cell="tanh", N=4, solved=True),
            dict(method="a", cell="tanh", N=8, solved=False),
            dict(method="a", cell="tanh", N=8, solved=False),
        ]
    )
    assert (
        _skip(df, "a", "tanh", 16)
        and not _skip(df, "a", "tanh", 8)
        and not _skip(df, "b", "tanh", 16)
    )


def test_command_runs_in_parallel_resumes_and_draws(tmp_path, monkeypatch):
    import pandas as pd

    from experiments.seed000 import experiment

    monkeypatch.setitem(
        experiment.PRESETS,
        "tiny",
        dict(
            cells={"tanh": [2, 3]},
            seeds=[0, 1],
            max_steps=10,
            max_seconds=30.0,
            methods=["bptt", "table-K1"],
            grid=[(0.01, 1.0), (0.03, 0.1)],
        ),
    )
    assert experiment.main(["--preset", "tiny", "--out", str(tmp_path), "--jobs", "2"]) == 0
    runs = pd.read_csv(tmp_path / "runs_tiny.csv")
    assert set(runs.stopped_by) <= {"solved", "steps", "skipped"}
    settings = {m: sorted(set(zip(g.lr, g.mu))) for m, g in runs.groupby("method")}
    assert settings == {
        "bptt": [(0.01, 1.0), (0.03, 1.0)],
        "table-K1": [(0.01, 1.0), (0.03, 0.1)],
    }  # μ: tables only
    assert len(runs) == 2 * 2 * 4
    assert set(experiment.label(runs).label) >= {"bptt lr=0.03 mu=1", "table-K1 lr=0.01 mu=1"}
    assert set(pd.read_csv(tmp_path / "timing_tiny.csv").method) == {"bptt", "table-K1"}
    assert (tmp_path / "steps_vs_lag_tiny.png").stat().st_size > 0 and (
        tmp_path / "front_tiny.png"
    ).exists()
    before = (tmp_path / "runs_tiny.csv").read_text()
    assert experiment.main(["--preset", "tiny", "--out", str(tmp_path)]) == 0  # nothing left to run
    assert (tmp_path / "runs_tiny.csv").read_text() == before
    with pytest.raises(SystemExit, match="2"):  # argparse: usage, exit 2
        experiment.main(["--preset", "tiny", "--out", str(tmp_path), "--jobs", "0"])


def test_front_probe_is_a_fitted_linear_classifier():
    """The sign sits in x0 - x1 under noise shared by both: the class means barely differ per
    coordinate against the noise, but a fitted linear probe cancels the noise exactly."""
    torch.manual_seed(1)
    M = 400
    label = torch.randperm(M) % 2
    z = 10 * torch.randn(M, 1)
    states = torch.cat([0.5 * (2 * label[:, None] - 1) + z, z, torch.randn(M, 2)], -1)[
        :, None
    ]  # (M, 1, 4)
    assert probe_accuracy(states, label).item() == 1.0
