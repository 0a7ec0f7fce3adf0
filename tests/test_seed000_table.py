"""The state-table method: indexing, the frozen schedule, the consistency loss, roll-out, lag 4."""

from __future__ import annotations

import pytest
import torch

from experiments.seed000.cells import TanhCell, roll_out
from experiments.seed000.experiment import data as _data
from experiments.seed000.table import FrozenTableOptimizer, TableModel


def test_previous_states_index_the_table_and_start_at_h0():
    model = TableModel(TanhCell(3, 4), 4, M=5, T=6)
    ids = torch.tensor([3, 1])
    prev = model.previous(ids)
    assert prev.shape == (2, 6, 4)
    assert torch.equal(prev[:, 0], torch.zeros(2, 4))
    assert torch.equal(prev[0, 1:], model.table[3, :-1]) and torch.equal(
        prev[1, 1:], model.table[1, :-1]
    )


def test_consistency_is_zero_on_the_roll_out_and_positive_off_it():
    torch.manual_seed(0)
    x, y = _data(4, 7, 3, 0)
    model = TableModel(TanhCell(3, 5), 5, M=4, T=7)
    with torch.no_grad():
        model.table.copy_(
            roll_out(model.cell, x.transpose(0, 1), torch.zeros(4, 5)).transpose(0, 1)
        )
    _, cons, logits = model.losses(torch.arange(4), x, y, mu=1.0)
    assert cons.item() < 1e-12 and model.max_residual(x) < 1e-6
    torch.testing.assert_close(
        logits, model.roll_out_logits(x)
    )  # lookup == roll-out when consistent
    with torch.no_grad():
        model.table[2, 3] += 1.0
    assert model.losses(torch.arange(4), x, y, mu=1.0)[1].item() > 0.1
    ce, cons_t = model.transition_losses(torch.tensor([2]), torch.tensor([3]), x, y, mu=1.0)
    assert cons_t.item() == pytest.approx(5.0, rel=1e-4) and ce.item() == 0  # 5 dims, each off by 1


def test_frozen_table_moves_every_K_steps_by_the_mean_gradient():
    torch.manual_seed(1)
    x, y = _data(6, 5, 3, 1)
    model = TableModel(TanhCell(3, 4), 4, M=6, T=5)
    opt = FrozenTableOptimizer(model, lr=0.1, freeze=3)
    before, w_before = model.table.detach().clone(), model.cell.W.weight.detach().clone()
    grads = []
    for step in range(1, 4):
        ce, cons, _ = model.losses(torch.arange(6), x, y, mu=1.0)
        g_before = None if model.table.grad is None else model.table.grad.clone()
        (ce + cons).backward()
        grads.append(model.table.grad.clone() - (0 if g_before is None else g_before))
        refreshed = opt.step()
        assert refreshed == (step == 3)
        if step < 3:
            assert torch.equal(model.table, before)  # frozen
            assert not torch.equal(model.cell.W.weight, w_before)  # the weights move every step
    assert not torch.equal(model.table, before) and model.table.grad is None
    # Adam's first step moves each coordinate by lr * sign(mean gradient) (up to eps)
    mean = torch.stack(grads).mean(0)
    moved = before - model.table.detach()
    big = mean.abs() > 1e-4
    torch.testing.assert_close(moved[big], 0.1 * mean[big].sign(), rtol=1e-2, atol=1e-3)
    with pytest.raises(ValueError, match="freeze"):
        FrozenTableOptimizer(model, 0.1, freeze=0)


def test_tiny_run_learns_lag_4():
    torch.manual_seed(0)
    x, y = _data(64, 4, 4, 0)
    held_x, held_y = _data(256, 4, 4, 99)
    model = TableModel(TanhCell(4, 16), 16, M=64, T=4)
    opt = FrozenTableOptimizer(model, lr=0.03, freeze=1)
    ids = torch.arange(64)
    for step in range(1500):
        ce, cons, _ = model.losses(ids, x, y, mu=1.0)
        (ce + cons).backward()
        opt.step()
        if step % 100 == 99:
            acc = (model.roll_out_logits(held_x).argmax(-1) == held_y).float().mean().item()
            if acc >= 0.99:
                break
    assert acc >= 0.99, (step, acc, model.max_residual(x))


def test_experiment_row_and_alpha_fit():
    import pandas as pd

    from experiments.seed000.experiment import fit_alpha, run_one

    row, fronts = run_one("table-K1", 4, 0, M=64, n=16, max_steps=400, eval_every=25)
    assert row["solved"] and row["steps"] % 25 == 0 and row["table_bytes"] == 64 * 4 * 16 * 4
    assert (
        row["train_lookup_acc"] == 1.0
        and row["epochs"] == row["steps"]
        and row["depth_per_step"] == 1
    )
    assert [f["step"] for f in fronts] == list(range(25, row["steps"] + 1, 25)) and fronts[-1][
        "front"
    ] == 4
    df = pd.DataFrame(
        [dict(method="m", N=N, seed=0, solved=True, steps=3 * N**2) for N in (4, 8, 16)]
        + [dict(method="m", N=32, seed=0, solved=False, steps=1)]
        + [dict(method="m", N=64, seed=s, solved=s == 0, steps=5) for s in range(3)]
    )  # 1 of 3

    (fit,) = fit_alpha(df).to_dict("records")
    assert (
        fit["alpha"] == pytest.approx(2.0) and fit["c"] == pytest.approx(3.0) and fit["lags"] == 3
    )
