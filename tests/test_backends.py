"""Every CPU backend against the float64 reference, forward and backward, on awkward shapes."""

from __future__ import annotations

import pytest
import torch

from conftest import CPU_BACKENDS, assert_matches_reference, make_inputs

TS = [1, 2, 31, 32, 33, 63, 1000, 1023, 1025, 4097]
NS = [1, 3, 32, 257]
DTYPES = {"fp32": torch.float32, "fp64": torch.float64}


def _cases():
    for backend in CPU_BACKENDS:
        for T in TS:
            if backend == "torch-loop" and T > 1000:
                continue  # a Python loop: long T adds time, not coverage
            for N in NS:
                for dt in DTYPES:
                    for h0 in (True, False):
                        for rev in (False, True):
                            gates = "long" if (T + N + h0 + rev) % 2 else "sigmoid"
                            yield pytest.param(
                                backend,
                                T,
                                N,
                                dt,
                                h0,
                                rev,
                                gates,
                                id=f"{backend}-T{T}-N{N}-{dt}-h0{int(h0)}-rev{int(rev)}-{gates}",
                            )


@pytest.mark.parametrize("backend,T,N,dt,use_h0,reverse,gates", list(_cases()))
def test_forward_backward_vs_reference(
    backend, T, N, dt, use_h0, reverse, gates, small_chunks, poisoned
):
    dtype = DTYPES[dt]
    a, x, h0 = make_inputs(T, N, dtype, gates, seed=T * 7 + N, h0=use_h0)
    assert_matches_reference(backend, a, x, h0, reverse, dtype, seed=1)
