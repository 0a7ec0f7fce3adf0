"""Other libraries' first-order scans on the published anchor shape (B, C) = (8, 1536), fp32.

accelerated-scan (``accelerated_scan.warp.scan``, gates in (B, C, T)), flash-linear-attention's
HGRN kernel (``fla.ops.hgrn.fused_recurrent_hgrn``, log gates in (B, T, D)) and torch's compiled
``associative_scan``, beside cuda-scan and cuda-serial on the same numbers. A library that is not
installed is skipped (n/a), not failed.
"""

from __future__ import annotations

from .common import cuda_available, setup_once, sync

SUBJECTS = ["cuda-scan", "cuda-serial", "accelerated-scan", "fla-hgrn", "torch-compiled-assoc"]
B, C = 8, 1536


def _make(subject, T):
    import torch

    import lrbench

    g = torch.Generator(device="cuda").manual_seed(0)
    a = 0.999 + 0.001 * torch.rand(B, C, T, device="cuda", generator=g)
    x = torch.randn(B, C, T, device="cuda", generator=g)
    if subject in ("cuda-scan", "cuda-serial"):
        at, xt = a.permute(2, 0, 1).contiguous(), x.permute(2, 0, 1).contiguous()  # (T, B, C)
        return lambda: lrbench.linear_recurrence(at, xt, backend=subject)
    if subject == "accelerated-scan":
        try:
            from accelerated_scan.warp import scan
        except ImportError as e:
            raise NotImplementedError(f"accelerated-scan not installed: {e}") from e
        return lambda: scan(a, x)
    if subject == "fla-hgrn":
        try:
            from fla.ops.hgrn import fused_recurrent_hgrn
        except ImportError as e:
            raise NotImplementedError(f"flash-linear-attention not installed: {e}") from e
        xt, gt = x.transpose(1, 2).contiguous(), a.log().transpose(1, 2).contiguous()  # (B, T, C)
        return lambda: fused_recurrent_hgrn(xt, gt)
    if subject == "torch-compiled-assoc":
        try:
            from torch._higher_order_ops.associative_scan import associative_scan
        except ImportError as e:
            raise NotImplementedError(f"torch associative_scan unavailable: {e}") from e

        def combine(l, r):
            return l[0] * r[0], r[0] * l[1] + r[1]

        fn = torch.compile(
            lambda a, x: associative_scan(combine, (a, x), dim=2, combine_mode="generic")[1]
        )
        return lambda: fn(a, x)
    raise ValueError(subject)


class AnchorShape:
    version = "1"  # set by hand: bump it when what is measured changes
    params = (SUBJECTS, [1 << 10, 1 << 12, 1 << 14, 1 << 16])
    param_names = ["subject", "T"]
    timeout = 600

    @setup_once
    def setup(self, subject, T):
        if not cuda_available():
            raise NotImplementedError("no CUDA device")
        import torch

        torch.set_grad_enabled(False)
        self.call = _make(subject, T)
        self.call()  # compile / autotune
        sync("cuda")

    def time_forward(self, subject, T):
        self.call()
        sync("cuda")
