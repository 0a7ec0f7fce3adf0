"""auto's CPU rule: a table regenerated from the suite's own CPUGrid rows, and read per call."""
from __future__ import annotations

import itertools
import json

import pytest

from lrbench import auto_rule, cli


def _asv(tmp_path, times):
    """A minimal asv results folder holding CPUGrid times {(backend, T, N): seconds}."""
    backends, Ts, Ns = (sorted({k[i] for k in times}) for i in range(3))
    params = [[repr(b) for b in backends], [str(T) for T in Ts], [str(N) for N in Ns]]
    asv = tmp_path / "asv"
    (asv / "box").mkdir(parents=True)
    (asv / "benchmarks.json").write_text(json.dumps({auto_rule.BENCHMARK: {
        "version": "v1", "param_names": ["backend", "T", "N"], "params": params, "unit": "seconds"}}))
    values = [times.get(k) for k in itertools.product(backends, Ts, Ns)]
    (asv / "box" / "abc-existing.json").write_text(json.dumps({
        "commit_hash": "abcdef0123", "date": 1, "result_columns": ["result", "params", "version"],
        "results": {auto_rule.BENCHMARK: [values, params, "v1"]}}))
    return tmp_path


def test_table_from_measurements(tmp_path, monkeypatch):
    times = {}
    for T in (16, 256, 4096):
        times[("cpu-serial", T, 1)] = T * 1.0
        times[("cpu-chunked", T, 1)] = T * (2.0 if T < 256 else 0.5)     # wins from 256 on
        times[("cpu-serial", T, 8)] = T * 1.0
        times[("cpu-chunked", T, 8)] = T * (0.5 if T == 256 else 2.0)    # a lone win: not a rule
    results = _asv(tmp_path, times)
    table = auto_rule.build(str(results), machine="box")
    assert table["chunked_from_T"] == {"1": 256, "8": None} and table["commits"] == ["abcdef01"]
    monkeypatch.setattr(auto_rule, "TABLE", tmp_path / "auto.json")
    monkeypatch.setattr("lrbench.machine.name", lambda: "box")
    assert cli.main(["auto-table", "--results", str(results)]) == 0
    auto_rule._rows.cache_clear()
    auto_rule._start.cache_clear()
    try:
        assert auto_rule.chunked_wins(256, 1) and not auto_rule.chunked_wins(255, 1)
        assert auto_rule.chunked_wins(1 << 20, 2)              # N = 2 is nearest N = 1 (log2)
        assert not auto_rule.chunked_wins(1 << 20, 8) and not auto_rule.chunked_wins(1 << 20, 4096)
    finally:
        auto_rule._rows.cache_clear()
        auto_rule._start.cache_clear()


def test_no_rows_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="no bench_cpu.CPUGrid.time_scan rows"):
        auto_rule.build(str(_asv(tmp_path, {("cpu-serial", 16, 1): 1.0})), machine="elsewhere")
