"""The lrbench command and the bench helpers."""
from __future__ import annotations

import json

import pandas as pd

from lrbench import bench, cli


def test_backends_and_info(capsys):
    assert cli.main(["backends"]) == 0
    assert "cpu-chunked" in capsys.readouterr().out
    assert cli.main(["info"]) == 0
    stamp = json.loads(capsys.readouterr().out)
    assert {"cpu", "torch", "numba", "commit", "gpu"} <= set(stamp)


def test_speedup_table_divides_base_time_by_backend_time():
    df = pd.DataFrame([dict(backend="cpu-serial", N=1, T=8, seconds=2.0, **{"pass": "forward"}),
                       dict(backend="cpu-chunked", N=1, T=8, seconds=0.5, **{"pass": "forward"}),
                       dict(backend="cpu-chunked", N=1, T=8, seconds=0.1, **{"pass": "forward-kernel"})])
    assert bench.speedup_table(df).loc[(1, 8), "cpu-chunked"] == 4.0


def test_median_time_warms_up_and_repeats():
    calls = []
    t = bench.median_time(lambda: calls.append(1), min_reps=5, min_seconds=0.0)
    assert len(calls) == 6 and t >= 0.0
