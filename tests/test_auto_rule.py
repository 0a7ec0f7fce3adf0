"""auto's CPU rule on measured machines: a per-machine table written from the suite's own CPUGrid
rows by `lrbench auto-table`, and read per call (machines without an entry: test_auto_facts.py)."""

from __future__ import annotations

import itertools
import json

import pytest

from lrbench import auto_rule, auto_table, cli


def _asv(tmp_path, times):
    """A minimal asv results folder holding CPUGrid times {(backend, T, N): seconds}."""
    backends, Ts, Ns = (sorted({k[i] for k in times}) for i in range(3))
    params = [[repr(b) for b in backends], [str(T) for T in Ts], [str(N) for N in Ns]]
    asv = tmp_path / "asv"
    (asv / "box").mkdir(parents=True)
    (asv / "benchmarks.json").write_text(
        json.dumps(
            {
                auto_rule.BENCHMARK: {
                    "version": "v1",
                    "param_names": ["backend", "T", "N"],
                    "params": params,
                    "unit": "seconds",
                }
            }
        )
    )
    values = [times.get(k) for k in itertools.product(backends, Ts, Ns)]
    (asv / "box" / "abc-existing.json").write_text(
        json.dumps(
            {
                "commit_hash": "abcdef0123",
                "date": 1,
                "result_columns": ["result", "params", "version"],
                "results": {auto_rule.BENCHMARK: [values, params, "v1"]},
            }
        )
    )
    return tmp_path


@pytest.fixture
def fresh_rule():
    auto_rule.reset()
    yield
    auto_rule.reset()


def test_table_from_measurements(tmp_path, monkeypatch, fresh_rule):
    times = {}
    for T in (16, 256, 4096):
        times[("cpu-serial", T, 1)] = T * 1.0
        times[("cpu-chunked", T, 1)] = T * (2.0 if T < 256 else 0.5)  # wins from 256 on
        times[("cpu-serial", T, 8)] = T * 1.0
        times[("cpu-chunked", T, 8)] = T * (0.5 if T == 256 else 2.0)  # a lone win: not a rule
    results = _asv(tmp_path, times)
    entry = auto_table.build(str(results), machine="box")
    assert entry == {"chunked_from_T": {"1": 256, "8": None}, "commits": ["abcdef01"]}
    table = tmp_path / "auto.json"
    other = {"chunked_from_T": {"1": 16}, "commits": ["0000000a"]}
    table.write_text(json.dumps({"about": "old", "machines": {"elsewhere": other}}))
    monkeypatch.setattr(auto_rule, "TABLE", table)
    monkeypatch.setattr("lrbench.machine.name", lambda: "box")
    assert cli.main(["auto-table", "--results", str(results)]) == 0
    written = json.loads(table.read_text())
    assert written["machines"] == {"box": entry, "elsewhere": other}  # only this machine's entry
    assert cli.main(["auto-table", "--results", str(results)]) == 0
    assert json.loads(table.read_text()) == written  # unchanged: not rewritten
    auto_rule.reset()
    assert auto_rule.rule() == ("table", {1: 256, 8: None})
    assert auto_rule.chunked_wins(256, 1) and not auto_rule.chunked_wins(255, 1)
    assert auto_rule.chunked_wins(1 << 20, 2)  # N = 2 is nearest N = 1 (log2)
    assert not auto_rule.chunked_wins(1 << 20, 8) and not auto_rule.chunked_wins(1 << 20, 4096)


def test_no_rows_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="no bench_cpu.CPUGrid.time_scan rows"):
        auto_table.build(str(_asv(tmp_path, {("cpu-serial", 16, 1): 1.0})), machine="elsewhere")


def test_a_one_machine_file_is_migrated(tmp_path):
    """The older shape (one machine at the top level) reads as that machine's entry and is kept
    when another machine's entry is written."""
    old = tmp_path / "auto.json"
    old.write_text(
        json.dumps(
            {
                "about": "x",
                "machine": "intel-xeon-2c",
                "commits": ["f143a5fb"],
                "chunked_from_T": {"1": 1048576, "64": 65536},
            }
        )
    )
    xeon = {"chunked_from_T": {"1": 1048576, "64": 65536}, "commits": ["f143a5fb"]}
    assert auto_rule.machines(old) == {"intel-xeon-2c": xeon}
    new = {"chunked_from_T": {"1": None}, "commits": ["abc"]}
    doc = auto_table.updated(old, "amd-epyc-2c", new)
    assert doc["machines"] == {"amd-epyc-2c": new, "intel-xeon-2c": xeon}
    assert auto_table.updated(tmp_path / "missing.json", "box", new)["machines"] == {"box": new}


def test_the_shipped_table_is_per_machine():
    machines = auto_rule.machines()
    assert "intel-xeon-2c" in machines
    for name, entry in machines.items():
        assert set(entry) == {"chunked_from_T", "commits"}, name
        assert all(
            T is None or (isinstance(T, int) and T > 0) for T in entry["chunked_from_T"].values()
        )
