"""A stack of recurrent layers over embedded tokens with a linear readout of the last state."""

from __future__ import annotations

import torch
from torch import nn

from .layers import FORGET_BIAS, GILR, GILRLSTM, QRNN, SRU, set_scan_backend

MODELS = ("gilr", "gilr-lstm", "sru", "qrnn", "lstm")


class SequenceClassifier(nn.Module):
    """Tokens ``idx (T, B)`` in ``[0, vocab)``, with an optional per-sequence ``sign (B,)`` that
    multiplies the first step (problem 2b's ±e_0), -> logits ``(B, classes)`` from the last step.

    ``embed(idx)`` is one-hot(idx) @ W, so million-step batches never materialise one-hots.
    ``kind`` is one of MODELS; ``lstm`` is ``torch.nn.LSTM`` (cuDNN on a GPU) and ignores
    ``scan_backend``. ``forget_bias`` initialises every forget gate's bias (the LSTM's too: its
    ``bias_ih`` forget slice, with ``bias_hh``'s zeroed), so both families start with the same memory.
    """

    def __init__(
        self,
        kind: str,
        vocab: int,
        hidden: int,
        layers: int = 2,
        classes: int = 2,
        scan_backend: str = "auto",
        qrnn_k: int = 2,
        surrogate: str = "previous",
        forget_bias: float = FORGET_BIAS,
    ):
        super().__init__()
        if kind not in MODELS:
            raise ValueError(f"argument 'kind' must be one of {MODELS}, got {kind!r}")
        self.kind = kind
        self.embed = nn.Embedding(vocab, hidden)
        nn.init.uniform_(self.embed.weight, -1.0, 1.0)
        if kind == "lstm":
            self.rnn = nn.LSTM(hidden, hidden, num_layers=layers)
            with torch.no_grad():
                for name, b in self.rnn.named_parameters():
                    if name.startswith("bias"):  # gates i, f, g, o
                        b[hidden : 2 * hidden] = forget_bias if name.startswith("bias_ih") else 0.0
        else:
            make = {
                "gilr": lambda: GILR(hidden, hidden, scan_backend),
                "gilr-lstm": lambda: GILRLSTM(hidden, hidden, scan_backend, surrogate, forget_bias),
                "sru": lambda: SRU(hidden, hidden, scan_backend, forget_bias),
                "qrnn": lambda: QRNN(hidden, hidden, qrnn_k, scan_backend, forget_bias),
            }[kind]
            self.rnn = nn.Sequential(*(make() for _ in range(layers)))
        self.readout = nn.Linear(hidden, classes)

    def set_scan_backend(self, name: str) -> None:
        set_scan_backend(self, name)

    def forward(self, idx: torch.Tensor, sign: torch.Tensor | None = None) -> torch.Tensor:
        if idx.ndim != 2:
            raise ValueError(
                f"argument 'idx' must be (T, B) token ids, got shape {tuple(idx.shape)}"
            )
        x = self.embed(idx)
        if sign is not None:
            x = torch.cat([x[:1] * sign.to(x.dtype)[None, :, None], x[1:]])
        h = self.rnn(x)[0] if self.kind == "lstm" else self.rnn(x)
        return self.readout(h[-1])
