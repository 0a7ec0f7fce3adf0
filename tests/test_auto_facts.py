"""auto's CPU rule on a machine without a measured table: derived from that machine's own facts
(lrbench/hwfacts.py), cached outside the package. Every fact here is fabricated: no timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lrbench import atomic, auto_rule, cli, hwfacts

ROOT = Path(__file__).resolve().parents[1]
P = 2
# amd-epyc-2c as measured: two threads scale compute 1.96x, but copy at 0.81x one thread
EPYC = {
    "copy1_GBps": 25.0,
    "copyP_GBps": 25.0 * 0.81,
    "handoff_us": 85.0,
    "chain_ns": 2.0,
    "compute_scale": 1.96,
}
# intel-xeon-2c as measured on a quiet machine: two threads copy 1.8x as fast as one
XEON = {
    "copy1_GBps": 13.5,
    "copyP_GBps": 13.5 * 1.8,
    "handoff_us": 85.0,
    "chain_ns": 1.62,
    "compute_scale": 1.9,
}
PIPELINED = (8, 16, 24, 64, 256, 4096, 1 << 16)
LONG = (1 << 20, 1 << 24, 1 << 30)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty facts cache of its own, the rule forgotten before and after, and ``measure``
    replaced by one that counts its calls and returns ``box.facts``."""
    monkeypatch.setenv(hwfacts.ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(hwfacts, "_memory", {})
    monkeypatch.setattr(hwfacts, "_threads_now", lambda: P)
    monkeypatch.setattr(hwfacts, "load_per_core", lambda: 0.1)

    class Box:
        facts, calls = dict(XEON), 0

    def measure(threads=None):
        Box.calls += 1
        return dict(Box.facts)

    monkeypatch.setattr(hwfacts, "measure", measure)
    auto_rule.reset()
    yield Box
    auto_rule.reset()


def _on_machine(monkeypatch, name, table):
    path = table.parent / "auto.json"
    path.write_text(
        json.dumps(
            {
                "about": "test",
                "machines": {
                    "known-box": {"chunked_from_T": {"1": 4096, "256": None}, "commits": ["abc"]}
                },
            }
        )
    )
    monkeypatch.setattr(auto_rule, "TABLE", path)
    monkeypatch.setattr(auto_rule, "_machine", lambda: name)
    auto_rule.reset()


def test_bandwidth_that_does_not_scale_never_picks_the_pipeline():
    for N in PIPELINED:
        assert auto_rule.pipelined(N)
        assert auto_rule.derive(EPYC, N, P) is None, N
        assert all(auto_rule.speedup(EPYC, T, N, P) < 1 for T in (1 << 12, 1 << 20)), N
    flat = {**XEON, "copyP_GBps": XEON["copy1_GBps"], "compute_scale": 2.0, "handoff_us": 1e-3}
    assert all(auto_rule.derive(flat, N, P) is None for N in PIPELINED)  # bwP == bw1: never


def test_bandwidth_that_scales_picks_the_pipeline_at_long_T():
    for N in PIPELINED:
        start = auto_rule.derive(XEON, N, P)
        assert start is not None and start * N <= 1 << 22, N  # from a few million elements
        assert start > 16 and auto_rule.speedup(XEON, start, N, P) >= auto_rule.MIN_SPEEDUP
        assert 1.3 < auto_rule.speedup(XEON, 1 << 24, N, P) < 1.5  # 0.8 x 1.8 at length
    # intel-xeon-2c's measured table agrees where it measured: chunked at T = 2^20, N = 16 and
    # T = 2^16, N = 64 and 256; serial at T = 4096, N = 256 and T = 2^16, N = 16
    for T, N, want in (
        (1 << 20, 16, True),
        (1 << 16, 64, True),
        (1 << 16, 256, True),
        (4096, 256, False),
        (1 << 16, 16, False),
    ):
        start = auto_rule.derive(XEON, N, P)
        assert (start is not None and T >= start) == want, (T, N)


def test_chains_follow_compute_and_the_hand_off():
    """Few channels: chunked once T amortises the hand-offs, where the cores add compute."""
    for facts in (XEON, EPYC):
        for N in (1, 2, 3, 4):
            start = auto_rule.derive(facts, N, P)
            assert start is not None and 1 << 12 < start <= 1 << 20, (N, start)
        slower = auto_rule.derive({**facts, "handoff_us": 10 * facts["handoff_us"]}, 1, P)
        assert slower > auto_rule.derive(facts, 1, P)  # dearer hand-off: longer T
    one_core = {**XEON, "compute_scale": 1.0}  # e.g. two hyperthreads
    assert all(auto_rule.derive(one_core, N, P) is None for N in (1, 2, 4))
    assert all(auto_rule.derive(XEON, N, 1) is None for N in (1, 4, 256))  # one thread


def test_constants_match_cpu_chunked():
    from lrbench.scan.cpu import chains as _numba_chains
    from lrbench.scan.cpu import chunked as cpu_chunked

    assert auto_rule.W == _numba_chains.W and auto_rule.CHAINS_BELOW == cpu_chunked.CHAINS_BELOW
    assert auto_rule.HEAD == cpu_chunked.HEAD and auto_rule.TILE_BYTES == cpu_chunked.TILE_BYTES
    assert all(auto_rule.pipelined(N) == cpu_chunked.pipelined(N) for N in range(1, 80))


def test_measure_runs_and_gives_every_fact(monkeypatch):
    """The real measurement, shrunk to a few milliseconds: every fact is there, positive and
    finite (what the values are is the machine's business: no timing is asserted)."""
    monkeypatch.setattr(hwfacts, "COPY_BYTES", 1 << 20)
    monkeypatch.setattr(hwfacts, "CHAIN_SECONDS", 1e-3)
    monkeypatch.setattr(hwfacts, "HANDOFF_ROUNDS", 3)
    monkeypatch.setattr(hwfacts, "ROUNDS", 1)
    facts = hwfacts.measure(threads=2)
    assert set(facts) == {*hwfacts.FIELDS, "cpu_share"}
    assert all(isinstance(v, float) and 0 < v < float("inf") for v in facts.values()), facts
    assert facts["compute_scale"] <= 2 and facts["cpu_share"] <= 1


def test_an_unknown_machine_uses_its_own_facts(cache, monkeypatch, tmp_path):
    _on_machine(monkeypatch, "unknown-box", tmp_path)
    cache.facts = dict(EPYC)
    kind, doc = auto_rule.rule()
    assert kind == "facts" and doc["machine"] == "unknown-box" and doc["facts"] == EPYC
    assert not any(auto_rule.chunked_wins(T, N) for T in LONG for N in PIPELINED)
    assert auto_rule.chunked_wins(1 << 20, 1) and not auto_rule.chunked_wins(1 << 10, 1)
    assert cache.calls == 1
    # the rule is cached: no file read, no measuring, on later calls
    monkeypatch.setattr(auto_rule, "TABLE", tmp_path / "gone.json")
    monkeypatch.setattr(hwfacts, "measure", lambda threads=None: pytest.fail("measured again"))
    assert [auto_rule.chunked_wins(1 << 20, N) for N in (1, 256)] == [True, False]


def test_a_failed_measurement_means_cpu_serial_not_a_failed_call(cache, monkeypatch, tmp_path):
    _on_machine(monkeypatch, "unknown-box", tmp_path)

    def broken(threads=None):
        raise MemoryError("no room for the copy")

    monkeypatch.setattr(hwfacts, "measure", broken)
    with pytest.warns(RuntimeWarning, match="no room for the copy"):
        assert not auto_rule.chunked_wins(1 << 30, 1)
    assert auto_rule.rule() == ("none", {}) and not auto_rule.chunked_wins(1 << 30, 4096)


def test_a_known_machine_uses_its_table_and_measures_nothing(cache, monkeypatch, tmp_path):
    _on_machine(monkeypatch, "known-box", tmp_path)
    monkeypatch.setattr(hwfacts, "measure", lambda threads=None: pytest.fail("measured"))
    assert auto_rule.rule() == ("table", {1: 4096, 256: None})
    assert auto_rule.chunked_wins(4096, 1) and not auto_rule.chunked_wins(4095, 1)
    assert not auto_rule.chunked_wins(1 << 30, 256)


def test_facts_are_cached_atomically_and_read_back(cache, monkeypatch):
    writes = []
    real = atomic.write

    def spy(path, fill):
        writes.append(Path(path))
        return real(path, fill)

    monkeypatch.setattr(atomic, "write", spy)
    doc = hwfacts.facts("box")
    path = hwfacts.cache_path("box")
    assert writes == [path] and cache.calls == 1
    assert path.parent == Path(os.environ[hwfacts.ENV]) and path.name == "facts-box.json"
    assert not list(path.parent.glob(".*.tmp"))
    stamped = json.loads(path.read_text())
    assert stamped == doc and stamped["machine"] == "box" and stamped["threads"] == P
    from lrbench import __version__

    assert stamped["lrbench"] == __version__ and stamped["facts"] == XEON
    # a new process (nothing in memory) reads the file and measures nothing
    monkeypatch.setattr(hwfacts, "_memory", {})
    monkeypatch.setattr(hwfacts, "measure", lambda threads=None: pytest.fail("measured again"))
    assert hwfacts.facts("box") == doc


def test_the_default_cache_is_outside_the_package(monkeypatch, tmp_path):
    monkeypatch.delenv(hwfacts.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hwfacts.cache_path("m") == tmp_path / "xdg" / "lrbench" / "facts-m.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hwfacts.cache_path("m") == tmp_path / "home" / ".cache" / "lrbench" / "facts-m.json"


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "",
        "[1, 2]",
        "\xff\xfe",
        json.dumps({"machine": "box", "lrbench": "0.0.0-other", "threads": P, "facts": XEON}),
        json.dumps({"machine": "other-box", "lrbench": "*", "threads": P, "facts": XEON}),
        json.dumps({"machine": "box", "lrbench": "*", "threads": P + 1, "facts": XEON}),
        json.dumps(
            {"machine": "box", "lrbench": "*", "threads": P, "facts": {**XEON, "chain_ns": None}}
        ),
        json.dumps(
            {"machine": "box", "lrbench": "*", "threads": P, "facts": {**XEON, "copy1_GBps": -1}}
        ),
        json.dumps({"machine": "box", "lrbench": "*", "threads": P, "facts": {"copy1_GBps": 1}}),
    ],
)
def test_a_bad_cache_file_is_measured_again(cache, content):
    from lrbench import __version__

    path = hwfacts.cache_path("box")
    path.parent.mkdir(parents=True)
    path.write_text(content.replace('"*"', json.dumps(__version__)), encoding="latin-1")
    doc = hwfacts.facts("box")
    assert cache.calls == 1 and doc["facts"] == XEON
    assert json.loads(path.read_text()) == doc  # and replaced


def test_an_unwritable_cache_keeps_the_facts_in_memory(cache, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(hwfacts.ENV, str(blocker / "cache"))  # a folder under a file
    doc = hwfacts.facts("box")
    assert doc["facts"] == XEON and cache.calls == 1
    assert hwfacts.facts("box") == doc and cache.calls == 1


def test_facts_measured_busy_are_measured_again_when_quiet(cache, monkeypatch):
    monkeypatch.setattr(hwfacts, "load_per_core", lambda: 1.5)
    busy = hwfacts.facts("box")
    assert busy["busy"] and busy["load_per_core"] == 1.5 and cache.calls == 1
    monkeypatch.setattr(hwfacts, "_memory", {})
    assert hwfacts.facts("box") == busy and cache.calls == 1  # still busy: kept
    monkeypatch.setattr(hwfacts, "load_per_core", lambda: 0.2)
    assert hwfacts.facts("box") == busy and cache.calls == 1  # quiet, but tried just now
    monkeypatch.setattr(hwfacts, "RETRY_BUSY_S", 0)
    quiet = hwfacts.facts("box")
    assert not quiet["busy"] and quiet["load_per_core"] == 0.2 and cache.calls == 2
    assert hwfacts.facts("box") == quiet and cache.calls == 2


def test_threads_starved_by_other_processes_mark_the_facts_busy(cache):
    """A low load average but P threads that got little CPU (others held the cores)."""
    cache.facts = {**XEON, "cpu_share": 0.55}
    doc = hwfacts.facts("box")
    assert doc["busy"] and doc["cpu_share"] == 0.55 and doc["load_per_core"] == 0.1
    cache.facts = {**XEON, "cpu_share": 0.97}
    assert not hwfacts.facts("other-box")["busy"]


def test_auto_table_facts_prints_the_rule_and_leaves_the_table(
    cache, monkeypatch, tmp_path, capsys
):
    _on_machine(monkeypatch, "unknown-box", tmp_path)
    monkeypatch.setattr("lrbench.machine.name", lambda: "unknown-box")
    table = auto_rule.TABLE.read_text()
    cache.facts = dict(EPYC)
    assert cli.main(["auto-table", "--facts"]) == 0
    out = capsys.readouterr().out
    assert "unknown-box" in out and "0.81x" in out and "rule from these facts" in out
    assert "N =   256      never" in out
    assert cache.calls == 1 and auto_rule.TABLE.read_text() == table
    assert hwfacts.cache_path("unknown-box").exists()


RUNTIME = """
import sys, torch, lrbench
from lrbench import auto_rule, hwfacts
hwfacts.measure = lambda threads=None: {"copy1_GBps": 10.0, "copyP_GBps": 18.0,   # no timing here
    "handoff_us": 80.0, "chain_ns": 1.6, "compute_scale": 1.9}
if sys.argv[1] == "facts":     # as on a machine without a table
    auto_rule._machine = lambda: "no-such-machine"
for T, N in ((16, 1), (1 << 20, 1), (1 << 12, 256)):
    a, x = torch.rand(T, N), torch.randn(T, N)
    lrbench.linear_recurrence(a, x, backend="auto")
print(auto_rule.rule()[0])
bad = sorted(m for m in sys.modules if m == "pandas" or m.startswith(("pandas.", "lrbench.report",
             "lrbench.auto_table", "matplotlib")))
assert not bad, bad
"""


@pytest.mark.parametrize("source", ["this-machine", "facts"])
def test_the_runtime_path_imports_no_reporting_code(source, tmp_path):
    """Importing lrbench and a CPU call of auto load neither pandas nor lrbench.report."""
    r = subprocess.run(
        [sys.executable, "-c", RUNTIME, source],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, hwfacts.ENV: str(tmp_path)},
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == ("facts" if source == "facts" else auto_rule.rule()[0])
