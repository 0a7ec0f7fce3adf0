"""The linear-surrogate models: serial and parallel recurrences agree, shapes, gradients, the task."""

from __future__ import annotations

import pytest
import torch

from lrbench.models import GILR, GILRLSTM, QRNN, SRU, SequenceClassifier, set_scan_backend
from lrbench.tasks import problem_2b

LAYERS = {
    "gilr": lambda b: GILR(5, 7, b),
    "gilr-lstm": lambda b: GILRLSTM(5, 7, b),
    "gilr-lstm-code": lambda b: GILRLSTM(5, 7, b, surrogate="current"),
    "sru": lambda b: SRU(5, 7, b),
    "sru-square": lambda b: SRU(5, 5, b),
    "qrnn-2": lambda b: QRNN(5, 7, 2, b),
    "qrnn-10": lambda b: QRNN(5, 7, 10, b),
}


@pytest.mark.parametrize("T", [1, 2, 33, 1025])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_same_weights_same_outputs_serial_or_parallel(name, T, small_chunks):
    torch.manual_seed(0)
    layer = LAYERS[name]("torch-loop").double()
    x = torch.randn(T, 3, 5, dtype=torch.float64, requires_grad=True)
    outs = {}
    for backend in ("torch-loop", "cpu-serial", "cpu-chunked"):
        set_scan_backend(layer, backend)
        layer.zero_grad()
        x.grad = None
        h = layer(x)
        h.square().sum().backward()
        outs[backend] = (h.detach(), x.grad.clone(), [p.grad.clone() for p in layer.parameters()])
    assert outs["torch-loop"][0].shape == (T, 3, 5 if name == "sru-square" else 7)
    for backend in ("cpu-serial", "cpu-chunked"):
        for u, v in zip(outs["torch-loop"][:2], outs[backend][:2]):
            torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)
        for u, v in zip(outs["torch-loop"][2], outs[backend][2]):
            torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_gradcheck(name):
    torch.manual_seed(1)
    layer = LAYERS[name]("cpu-serial").double()
    x = torch.randn(6, 2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer(x), (x,))


def test_surrogate_previous_does_not_see_the_current_input():
    """With the paper's equations the gates at t see h̃_{t-1}: changing x_t's surrogate path cannot
    change the gates at t through h̃ (only through x_t directly); the code variant can."""
    torch.manual_seed(2)
    prev, cur = GILRLSTM(3, 4, "cpu-serial"), GILRLSTM(3, 4, "cpu-serial", surrogate="current")
    cur.load_state_dict(prev.state_dict())
    x = torch.randn(5, 1, 3)
    assert not torch.allclose(prev(x), cur(x))
    assert torch.allclose(prev(x)[0], GILRLSTM.forward(prev, x[:1])[0])


def test_classifier_shapes_and_sign():
    model = SequenceClassifier("gilr-lstm", vocab=8, hidden=6, layers=2, scan_backend="cpu-serial")
    idx = torch.randint(0, 8, (11, 4))
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0])
    logits = model(idx, sign)
    assert logits.shape == (4, 2)
    assert not torch.allclose(model(idx, sign), model(idx, -sign))
    with pytest.raises(ValueError, match="argument 'idx'"):
        model(idx[:, 0])
    with pytest.raises(ValueError, match="argument 'kind'"):
        SequenceClassifier("gru", 8, 6)


@pytest.mark.parametrize("kind", ["gilr-lstm", "sru", "qrnn", "lstm"])
def test_forget_bias_initialises_every_forget_gate(kind):
    n = 6
    model = SequenceClassifier(kind, 8, n, layers=2, forget_bias=7.5)
    forget = {
        "gilr-lstm": lambda l: l.gates.bias[:n],
        "sru": lambda l: l.proj.bias[n : 2 * n],
        "qrnn": lambda l: l.conv.bias[n : 2 * n],
    }
    if kind == "lstm":
        for k in range(2):
            b_ih, b_hh = getattr(model.rnn, f"bias_ih_l{k}"), getattr(model.rnn, f"bias_hh_l{k}")
            assert (b_ih[n : 2 * n] == 7.5).all() and (
                b_hh[n : 2 * n] == 0
            ).all()  # torch's order: i, f, g, o
            assert (b_ih[:n] != 7.5).all()
    else:
        for layer in model.rnn:
            assert (forget[kind](layer) == 7.5).all()
    assert (
        forget["gilr-lstm"](SequenceClassifier("gilr-lstm", 8, n).rnn[0]) == 5.0
    ).all()  # the paper's


@pytest.mark.parametrize("kind", ["gilr", "gilr-lstm", "sru", "qrnn"])
def test_classifier_serial_equals_parallel(kind, small_chunks):
    torch.manual_seed(3)
    model = SequenceClassifier(kind, 16, 8, 2, scan_backend="cpu-serial").double()
    idx, sign, _ = problem_2b(300, 3, 16, torch.Generator().manual_seed(0))
    a = model(idx, sign)
    model.set_scan_backend("cpu-chunked")
    torch.testing.assert_close(a, model(idx, sign), rtol=1e-10, atol=1e-12)


def test_problem_2b_labels_and_statistics():
    idx, sign, label = problem_2b(2000, 64, 16, torch.Generator().manual_seed(0))
    assert idx.shape == (2000, 64) and idx.dtype == torch.int64
    assert (idx[0] == 0).all() and idx.min() >= 0 and idx.max() < 16
    assert torch.equal(sign, label.float() * 2 - 1) and set(label.tolist()) == {0, 1}
    counts = torch.bincount(idx[1:].flatten(), minlength=16).float()
    expected = idx[1:].numel() / 16
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 50, chi2  # 15 dof: p < 1e-5 for a fair uniform draw
    assert 0.3 < label.float().mean().item() < 0.7
    again = problem_2b(2000, 64, 16, torch.Generator().manual_seed(0))
    assert torch.equal(idx, again[0]) and torch.equal(label, again[2])
    with pytest.raises(ValueError, match="T=0"):
        problem_2b(0, 1)
