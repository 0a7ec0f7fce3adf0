"""lrbench/_compat.py, the one place that touches torch's and Numba's private internals: each one
the pinned versions must have (a test per internal, failing by name), the fallbacks when one is
missing, and that the SLP flag still vectorises the chain kernel."""

from __future__ import annotations

import os
import re

import numba as nb
import pytest
import torch

from conftest import assert_close, make_inputs
from lrbench import _compat, api, op, packed
from lrbench.scan.cpu import chains as _numba_chains

_compat.numba_probed()


@pytest.mark.parametrize(
    "name",
    _compat.TORCH_DIRECT + _compat.TORCH_TRANSFORMS + _compat.NUMBA_SLP,
    ids=_compat.TORCH_DIRECT + _compat.TORCH_TRANSFORMS + _compat.NUMBA_SLP,
)
def test_internal_exists(name):
    assert name not in _compat.MISSING, (
        f"private internal {name} is missing or broken: {_compat.MISSING.get(name)}; "
        f"lrbench falls back to the slower public path"
    )


def test_direct_is_the_shim():
    """op, api and packed all use the shim's direct, the fast one (nothing is missing)."""
    assert op.direct is api.direct is packed.direct is _compat.direct
    a, x = torch.rand(4, 3), torch.rand(4, 3)
    assert _compat.direct(a, x, None)
    assert not _compat.direct(a.requires_grad_(), x, None)


def _without(missing_name):
    def get(name):
        if name == missing_name:
            raise AttributeError(f"module has no attribute {name.rpartition('.')[2]!r}")
        return _compat.lookup(name)

    return get


@pytest.mark.parametrize("name", _compat.TORCH_DIRECT, ids=_compat.TORCH_DIRECT)
def test_direct_fallback(name, monkeypatch):
    missing = {}
    direct = _compat.build_direct(_without(name), missing)
    assert list(missing) == [name]
    a, x, h0 = make_inputs(37, 5, torch.float64)
    assert direct(a, x, None) is False and direct(a, x, h0) is False
    ref = api.linear_recurrence(a, x, h0, backend="reference")
    calls = []
    apply, scan_out_op = op._Scan.apply, api.scan_out_op
    monkeypatch.setattr(
        op._Scan, "apply", staticmethod(lambda *args: calls.append("apply") or apply(*args))
    )
    monkeypatch.setattr(
        api, "scan_out_op", lambda *args, **kw: calls.append("out") or scan_out_op(*args, **kw)
    )
    monkeypatch.setattr(api, "forward", None)  # the direct path of an ``out=`` call
    for mod in (op, api, packed):
        monkeypatch.setattr(mod, "direct", direct)
    for backend in ("cpu-serial", "auto"):
        assert_close(backend, api.linear_recurrence(a, x, h0, backend=backend), ref, 1e-12, 1e-12)
        out = torch.empty_like(x)
        api.linear_recurrence(a, x, h0, backend=backend, out=out)
        assert_close(backend, out, ref, 1e-12, 1e-12)
    assert calls == ["apply", "out"] * 2, "a call skipped the dispatcher although direct() is False"


def test_direct_fallback_on_a_broken_internal():
    """One that exists but fails when called counts as missing too."""

    def get(name):
        if name == "torch._C._len_torch_dispatch_stack":
            return lambda: 1 / 0
        return _compat.lookup(name)

    missing = {}
    assert _compat.build_direct(get, missing)(torch.ones(1)) is False
    assert "ZeroDivisionError" in missing["torch._C._len_torch_dispatch_stack"]


# ---- the SLP vectorizer on the chain kernels ------------------------------------------------

F32 = nb.types.Array(nb.types.float32, 1, "C")
I64 = nb.types.int64
# reduce(a, ao, x, xo, rs, N, L, Q, P, R, tiny, g0, g1): the W-lane group kernel whose lanes (the
# adjacent channels q .. q+7 where N % W == 0) SLP packs into one vector. (scan, rescan and
# scan_blocked store h between the lanes' loads, which may alias them: LLVM keeps those scalar,
# with the flag or without, in Numba 0.68.)
REDUCE_SIG = (F32, I64, F32, I64, I64, I64, I64, I64, F32, F32, nb.types.float32, I64, I64)


def _float_vectors(kernel) -> set[str]:
    """The float vector types in ``kernel``'s optimised LLVM IR for REDUCE_SIG, e.g. {'<8 x float>'}."""
    kernel.compile(REDUCE_SIG)
    return set(re.findall(r"<\d+ x float>", kernel.inspect_llvm(REDUCE_SIG)))


def _copy():
    """An uncached copy of the chain kernel (cached code cannot be inspected)."""
    return nb.njit(nogil=True)(_numba_chains.reduce.py_func)


def test_chain_kernel_is_slp_wrapped():
    for name in (
        "reduce",
        "rescan",
        "rescan_grad",
        "scan",
        "scan_grad",
        "scan_blocked",
        "scan_grad_blocked",
    ):
        assert "compile" in vars(getattr(_numba_chains, name)), (
            f"_numba_chains.{name} is not slp-wrapped"
        )


@pytest.mark.skipif(bool(os.environ.get("NUMBA_SLP_VECTORIZE")), reason="NUMBA_SLP_VECTORIZE set")
@pytest.mark.skipif("avx2" not in open("/proc/cpuinfo").read(), reason="no AVX2: 8 lanes need it")
def test_chain_kernel_vectorises_on_8_float_lanes():
    """With the shim's slp the W = 8 lanes are one ``<8 x float>``; without it (the fallback) the
    same kernel has no float vector at all, so this test tells the two apart."""
    assert "<8 x float>" in _float_vectors(_compat.slp(_copy())), (
        f"the SLP flag no longer vectorises the chain kernel (numba {nb.__version__})"
    )
    assert _float_vectors(_copy()) == set(), "vectorised without the SLP flag"
    fallback = _compat.build_slp(_without("numba.core.config.SLP_VECTORIZE"), {})
    assert _float_vectors(fallback(_copy())) == set()
