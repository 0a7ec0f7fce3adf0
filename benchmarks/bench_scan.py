"""The scan, forward and forward+backward, over backend x T x N x dtype."""
from __future__ import annotations

import torch

import lrbench

from .common import BACKENDS, backend_device, inputs, require, setup_once, sync

TS = [1 << 4, 1 << 8, 1 << 12, 1 << 16, 1 << 20]
NS = [1, 4, 32, 128, 1024, 65536]
DTYPES = ["float32", "bfloat16"]


class ScanForward:
    """``h = linear_recurrence(a, x)``: the output is allocated per call, as a user's call does."""
    params = (BACKENDS, TS, NS, DTYPES)
    param_names = ["backend", "T", "N", "dtype"]
    timeout = 300

    @setup_once
    def setup(self, backend, T, N, dtype):
        require(backend, T, N, dtype)
        self.device = backend_device(backend)
        a, x = inputs(T, N, dtype, self.device)
        torch.set_grad_enabled(False)
        self.call = lambda: lrbench.linear_recurrence(a, x, backend=backend)
        self.call()                                  # compile, page in, warm up
        sync(self.device)

    def time_forward(self, backend, T, N, dtype):
        self.call()
        sync(self.device)


class ScanForwardBackward:
    """One training step of the recurrence: forward, then the gradients of a and x."""
    params = (BACKENDS, TS, NS, DTYPES)
    param_names = ["backend", "T", "N", "dtype"]
    timeout = 300

    @setup_once
    def setup(self, backend, T, N, dtype):
        require(backend, T, N, dtype)
        self.device = backend_device(backend)
        a, x = inputs(T, N, dtype, self.device, grad=True)
        gh = torch.ones_like(x).detach()
        torch.set_grad_enabled(True)

        def step():
            h = lrbench.linear_recurrence(a, x, backend=backend)
            return torch.autograd.grad(h, (a, x), gh)
        self.call = step
        self.call()
        sync(self.device)

    def time_forward_backward(self, backend, T, N, dtype):
        self.call()
        sync(self.device)
