"""The layers, one recurrence ``lrbench.linear_recurrence`` call (or two for the GILR-LSTM) each.

Initialisation follows the paper's code (``layers_new.py``): weights uniform in +-0.05, forget-gate
bias 5.0 (so f ~ 0.993 at the start: long memory from the first step); ``forget_bias`` changes it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..api import linear_recurrence

INIT_SCALE = 0.05
FORGET_BIAS = 5.0


def _init(linear: nn.Module, forget: slice | None = None, forget_bias: float = FORGET_BIAS):
    nn.init.uniform_(linear.weight, -INIT_SCALE, INIT_SCALE)
    nn.init.zeros_(linear.bias)
    if forget is not None:
        with torch.no_grad():
            linear.bias[forget] = forget_bias


def set_scan_backend(module: nn.Module, name: str) -> None:
    """Run every linear-surrogate layer in ``module`` with recurrence backend ``name``."""
    for mod in module.modules():
        if hasattr(mod, "scan_backend"):
            mod.scan_backend = name


def _scan(a, x, backend, group=None, with_start=False):
    """h; with ``with_start`` also the state before the first step: 0, or with a process ``group``
    (sequence parallelism, ``lrbench.distributed``) where the previous rank's slice ends."""
    if group is None:
        h = linear_recurrence(a, x, dim=0, backend=backend)
        return (h, x.new_zeros(x.shape[1:])) if with_start else h
    from ..distributed import linear_recurrence_with_start

    h, start = linear_recurrence_with_start(a, x, group=group, backend=backend)
    return (h, start) if with_start else h


class GILR(nn.Module):
    """Gated impulse linear recurrent layer (§3.1): g = σ(U x + b_g), i = τ(V x + b_i),
    h_t = g_t h_{t-1} + (1 - g_t) i_t. The paper's code defaults τ to ELU."""

    scan_group = None  # a process group: sequence parallel

    def __init__(self, m: int, n: int, scan_backend: str = "auto", nonlin=F.elu):
        super().__init__()
        self.proj, self.nonlin, self.scan_backend = nn.Linear(m, 2 * n), nonlin, scan_backend
        _init(self.proj)

    def forward(self, x, with_start=False):
        gate, imp = self.proj(x).chunk(2, dim=-1)
        g = torch.sigmoid(gate)
        return _scan(g, (1 - g) * self.nonlin(imp), self.scan_backend, self.scan_group, with_start)


class GILRLSTM(nn.Module):
    """The GILR-LSTM (§3.3): a GILR surrogate h̃ replaces h_{t-1} inside the LSTM's gates, so both
    the surrogate and the cell c_t = f_t c_{t-1} + i_t z_t are linear recurrences; h_t = o_t c_t.

    ``surrogate="previous"`` follows the paper's equations (gates see h̃_{t-1}, zero at t = 0);
    ``"current"`` follows the paper's code, which feeds h̃_t (already containing x_t).
    """

    scan_group = None

    def __init__(
        self,
        m: int,
        n: int,
        scan_backend: str = "auto",
        surrogate: str = "previous",
        forget_bias: float = FORGET_BIAS,
    ):
        super().__init__()
        if surrogate not in ("previous", "current"):
            raise ValueError(
                f"argument 'surrogate' must be 'previous' or 'current', got {surrogate!r}"
            )
        self.surrogate, self.scan_backend = surrogate, scan_backend
        self.gilr = GILR(m, n, scan_backend, nonlin=torch.tanh)
        self.gates = nn.Linear(n + m, 4 * n)  # f, i, o, z
        _init(self.gates, forget=slice(0, n), forget_bias=forget_bias)

    def forward(self, x):
        if self.surrogate == "previous":
            ht, start = self.gilr(x, with_start=True)
            ht = torch.cat([start[None], ht[:-1]])
        else:
            ht = self.gilr(x)
        f, i, o, z = self.gates(torch.cat([ht, x], dim=-1)).chunk(4, dim=-1)
        c = _scan(
            torch.sigmoid(f), torch.sigmoid(i) * torch.tanh(z), self.scan_backend, self.scan_group
        )
        return torch.sigmoid(o) * c


class SRU(nn.Module):
    """Simple recurrent unit (Lei & Zhang 2017, as in the paper's code): x̃, f, r from one matmul,
    c_t = f_t c_{t-1} + (1 - f_t) x̃_t, h_t = r_t c_t + (1 - r_t) x_t (highway). When m != n the
    highway goes through a linear map of x."""

    scan_group = None

    def __init__(
        self, m: int, n: int, scan_backend: str = "auto", forget_bias: float = FORGET_BIAS
    ):
        super().__init__()
        self.proj, self.scan_backend = nn.Linear(m, 3 * n), scan_backend
        _init(self.proj, forget=slice(n, 2 * n), forget_bias=forget_bias)
        self.skip = nn.Identity() if m == n else nn.Linear(m, n, bias=False)
        if m != n:
            nn.init.uniform_(self.skip.weight, -INIT_SCALE, INIT_SCALE)

    def forward(self, x):
        xt, f, r = self.proj(x).chunk(3, dim=-1)
        f, r = torch.sigmoid(f), torch.sigmoid(r)
        c = _scan(f, (1 - f) * xt, self.scan_backend, self.scan_group)
        return r * c + (1 - r) * self.skip(x)


class QRNN(nn.Module):
    """Quasi-recurrent network with fo-pooling (Bradbury et al. 2017): z, f, o from a causal
    convolution over the last ``k`` inputs; c_t = f_t c_{t-1} + (1 - f_t) z_t, h_t = o_t c_t.
    (The paper's code stacked k-1 taps, so its "filter 2" saw x_t only; here k means k taps.)"""

    def __init__(
        self,
        m: int,
        n: int,
        k: int = 2,
        scan_backend: str = "auto",
        forget_bias: float = FORGET_BIAS,
    ):
        super().__init__()
        if k < 1:
            raise ValueError(f"argument 'k' (window) must be >= 1, got {k}")
        self.k, self.scan_backend = k, scan_backend
        self.conv = nn.Conv1d(m, 3 * n, k)
        nn.init.uniform_(self.conv.weight, -INIT_SCALE, INIT_SCALE)
        nn.init.zeros_(self.conv.bias)
        with torch.no_grad():
            self.conv.bias[n : 2 * n] = forget_bias

    def forward(self, x):
        T, B, m = x.shape
        xc = F.pad(x.permute(1, 2, 0), (self.k - 1, 0))  # (B, m, T + k - 1), causal
        z, f, o = self.conv(xc).permute(2, 0, 1).chunk(3, dim=-1)  # (T, B, n) each
        z, f, o = torch.tanh(z), torch.sigmoid(f), torch.sigmoid(o)
        return o * _scan(f, (1 - f) * z, self.scan_backend)
