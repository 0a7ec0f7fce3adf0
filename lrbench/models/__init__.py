"""Linear-surrogate RNNs (GILR, GILR-LSTM, SRU, QRNN) and an LSTM baseline, paper §3.

Layout everywhere: time-major, inputs ``(T, B, m)``, outputs ``(T, B, n)``. Every linear-surrogate
layer takes ``scan_backend`` (any ``lrbench.backends()`` name or ``"auto"``): the same weights run
with the serial or the parallel recurrence and give the same outputs.
"""

from .layers import GILR, GILRLSTM, QRNN, SRU, set_scan_backend
from .classifier import MODELS, SequenceClassifier

__all__ = ["GILR", "GILRLSTM", "SRU", "QRNN", "SequenceClassifier", "MODELS", "set_scan_backend"]
