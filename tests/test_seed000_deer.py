"""quasi-DEER equals sequential evaluation; the cells' Jacobian diagonals are exact."""

from __future__ import annotations

import pytest
import torch

from experiments.seed000.cells import GRUCell, TanhCell, roll_out
from experiments.seed000.deer import quasi_deer

CELLS = {"tanh": TanhCell, "gru": GRUCell}


@pytest.mark.parametrize("name", sorted(CELLS))
def test_diagonal_matches_autograd(name):
    torch.manual_seed(0)
    cell = CELLS[name](3, 5).double()
    h, x = torch.randn(5, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda h: cell(h, x), h)
    y, d = cell.step_and_diag(h, x)
    torch.testing.assert_close(y, cell(h, x))
    torch.testing.assert_close(d, torch.diagonal(J), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("T", [1, 2, 31, 100])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_quasi_deer_equals_roll_out(name, T):
    torch.manual_seed(T)
    cell = CELLS[name](4, 6).double()
    x, h0 = torch.randn(T, 3, 4, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    ref = roll_out(cell, x, h0)
    h, iters = quasi_deer(cell, x, h0, tol=1e-12, backend="cpu-serial")
    assert iters <= T + 1
    torch.testing.assert_close(h, ref, rtol=1e-9, atol=1e-10)


def test_quasi_deer_warm_start_from_the_answer_takes_one_iteration():
    torch.manual_seed(1)
    cell = TanhCell(2, 4).double()
    x, h0 = torch.randn(50, 2, 2, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
    ref = roll_out(cell, x, h0)
    _, iters = quasi_deer(cell, x, h0, tol=1e-10, init=ref.clone())
    assert iters == 1
    with pytest.raises(ValueError, match="argument 'h0'"):
        quasi_deer(cell, x, torch.zeros(3, 4, dtype=torch.float64))
