"""The paper's model experiments: Table 2 (LS-RNN training throughput, parallel vs serial
recurrence, bT = 65,536) and the GILR-LSTM vs (cuDNN) LSTM heatmap (steps/s over batch x T).

Both time one training step (forward + backward). "serial" and "parallel" are the same weights
with the recurrence swapped: cpu-serial / cpu-chunked on the CPU, cuda-serial / cuda-scan on the
GPU. The CPU runs a reduced grid (hidden 64; batch x T <= 8192 for the heatmap): the rest is n/a.
"""

from __future__ import annotations

import torch
from torch import nn

from lrbench.models import GILRLSTM, QRNN, SRU

from .common import check_device, setup_once, sync

RECURRENCE = {
    ("cpu", "serial"): "cpu-serial",
    ("cpu", "parallel"): "cpu-chunked",
    ("cuda", "serial"): "cuda-serial",
    ("cuda", "parallel"): "cuda-scan",
}
MODELS = {
    "sru": lambda m, n, b: SRU(m, n, b),
    "qrnn-2": lambda m, n, b: QRNN(m, n, 2, b),
    "qrnn-10": lambda m, n, b: QRNN(m, n, 10, b),
    "gilr-lstm": lambda m, n, b: GILRLSTM(m, n, b),
}


def _device(device: str) -> None:
    check_device(device)


def _step(model: nn.Module, x: torch.Tensor):
    def step():
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()

    return step


class Table2:
    """2 stacked layers, input size 4, bT = 65,536: one training step (forward + backward)."""

    version = "1"  # set by hand: bump it when what is measured changes
    params = (
        ["cpu", "cuda"],
        list(MODELS),
        ["serial", "parallel"],
        [16, 256, 4096, 65536],
        [64, 256],
    )
    param_names = ["device", "model", "recurrence", "T", "hidden"]
    timeout = 600

    @setup_once
    def setup(self, device, model, recurrence, T, hidden):
        _device(device)
        if device == "cpu" and hidden > 64:
            raise NotImplementedError(
                "hidden 256 runs on the GPU only (minutes per step on 2 cores)"
            )
        backend = RECURRENCE[(device, recurrence)]
        torch.manual_seed(0)
        make = MODELS[model]
        net = nn.Sequential(make(4, hidden, backend), make(hidden, hidden, backend)).to(device)
        x = torch.randn(T, 65536 // T, 4, device=device)
        torch.set_grad_enabled(True)
        self.device, self.call = device, _step(net, x)
        self.call()
        sync(device)

    def time_train_step(self, device, model, recurrence, T, hidden):
        self.call()
        sync(self.device)


class _LSTM(nn.Module):
    def __init__(self, m, n):
        super().__init__()
        self.rnn = nn.LSTM(m, n, num_layers=2)
        self.out = nn.Linear(n, 2)

    def forward(self, x):
        return self.out(self.rnn(x)[0])


class _GILRLSTM(nn.Module):
    def __init__(self, m, n, backend):
        super().__init__()
        self.rnn = nn.Sequential(GILRLSTM(m, n, backend), GILRLSTM(n, n, backend))
        self.out = nn.Linear(n, 2)

    def forward(self, x):
        return self.out(self.rnn(x))


class Heatmap:
    """2 layers x 256 units, 32-dim input, 2-dim output: seconds per training step; the report
    turns them into thousand steps/s (batch x T / time) beside the paper's poster numbers."""

    version = "1"
    params = (["cpu", "cuda"], ["gilr-lstm", "lstm"], [1, 8, 64, 256], [256, 4096, 131072])
    param_names = ["device", "model", "batch", "T"]
    timeout = 600

    @setup_once
    def setup(self, device, model, batch, T):
        _device(device)
        if device == "cpu" and batch * T > 8192:
            raise NotImplementedError("reduced grid on the CPU: batch x T <= 8192")
        torch.manual_seed(0)
        net = (
            _LSTM(32, 256)
            if model == "lstm"
            else _GILRLSTM(32, 256, RECURRENCE[(device, "parallel")])
        ).to(device)
        x = torch.randn(T, batch, 32, device=device)
        torch.set_grad_enabled(True)
        self.device, self.call = device, _step(net, x)
        self.call()
        sync(device)

    def time_train_step(self, device, model, batch, T):
        self.call()
        sync(self.device)
