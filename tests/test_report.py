"""``lrbench report`` from asv result files (fabricated here in asv's format); the perf gate's tests
are in test_perfcheck.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lrbench import cli, report

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = [
    "result",
    "params",
    "version",
    "started_at",
    "duration",
    "stats_ci_99_a",
    "stats_ci_99_b",
    "stats_q_25",
    "stats_q_75",
    "stats_number",
    "stats_repeat",
    "samples",
    "profile",
]
SCAN = "bench_cpu.CPUGrid.time_scan"  # the headline chart's grid
T1 = "bench_paper.Table1.time_forward"


def _write_results(root: Path, version="v1", t1_params=None):
    asv = root / "asv"
    (asv / "box").mkdir(parents=True)
    backends, Ts, Ns = ["'cpu-serial'", "'cpu-chunked'"], ["16", "65536"], ["1", "32"]
    bench = {
        SCAN: dict(
            version=version,
            unit="seconds",
            param_names=["backend", "T", "N"],
            params=[backends, Ts, Ns],
        ),
        T1: dict(
            version=version,
            unit="seconds",
            param_names=["backend", "m", "T"],
            params=[backends, ["4", "32", "128"], ["16", "256", "4096", "65536"]],
        ),
    }
    (asv / "benchmarks.json").write_text(json.dumps(bench))
    # cpu-serial takes 1 s everywhere; cpu-chunked T/65536 s, so the speedup is 65536 / T.
    scan = [
        1.0 if b == "'cpu-serial'" else int(T) / 65536 for b in backends for T in Ts for N in Ns
    ]
    scan[1] = float("nan")  # a skipped point
    t1 = [
        1.0 if b == "'cpu-serial'" else int(T) / 65536
        for b in backends
        for m in range(3)
        for T in bench[T1]["params"][2]
    ]
    row = lambda r, p: [r, p, version] + [None] * (len(COLUMNS) - 3)
    data = dict(
        commit_hash="abcdef1234",
        env_name="existing",
        date=1,
        result_columns=COLUMNS,
        results={
            SCAN: row(scan, bench[SCAN]["params"]),
            T1: row(t1, t1_params or bench[T1]["params"]),
        },
    )
    (asv / "box" / "machine.json").write_text("{}")
    (asv / "box" / "abcdef12-existing.json").write_text(json.dumps(data))
    shutil.copytree(ROOT / "results" / "paper", root / "paper")
    return asv


def test_load_reads_asv_results(tmp_path):
    _write_results(tmp_path)
    df, problems = report.load(tmp_path / "asv")
    assert problems == []
    scan = df[df.benchmark == SCAN]
    assert len(scan) == 7  # 8 points, one skipped
    assert set(scan.backend) == {"cpu-serial", "cpu-chunked"} and set(scan["T"]) == {16, 65536}
    fast = scan[(scan.backend == "cpu-chunked") & (scan["T"] == 16) & (scan.N == 32)]
    assert fast.value.item() == pytest.approx(16 / 65536)


def test_report_writes_charts_and_tables_with_the_paper(tmp_path):
    _write_results(tmp_path)
    written, problems = report.run(str(tmp_path))
    names = {p.name for p in written}
    assert {
        "speedup_vs_length_box.png",
        "speedup_vs_length_box.svg",
        "table1_box.png",
        "table1_box.md",
        "scan_box.md",
    } <= names, names
    table = (tmp_path / "tables" / "table1_box.md").read_text()
    assert "paper m=4" in table and "38.5" in table  # the paper's number beside ours
    assert "cpu-chunked / cpu-serial m=4" in table and "4096" in table
    assert "| 65536 | 38.5 | 41.8 | 17.5 | 1 |" in table  # ours: 1 s / 1 s at T = 65536


def test_stale_and_corrupt_files_are_reported_and_the_rest_plots(tmp_path):
    asv = _write_results(tmp_path)
    (asv / "box" / "broken-existing.json").write_text("{not json")
    index = json.loads((asv / "benchmarks.json").read_text())
    index[T1]["version"] = "v2"  # Table1's code changed since
    (asv / "benchmarks.json").write_text(json.dumps(index))
    written, problems = report.run(str(tmp_path))
    assert any("broken-existing.json: corrupt" in p for p in problems), problems
    assert any("stale" in p and T1 in p for p in problems), problems
    assert any(p.name == "speedup_vs_length_box.png" for p in written)
    assert not any(p.name.startswith("table1") for p in written)


def test_missing_or_empty_results_fail_and_say_what_to_do(tmp_path, capsys):
    with pytest.raises(report.NoResults, match="run `make bench` first") as e:
        report.run(str(tmp_path))
    assert any("run the suite first" in p for p in e.value.problems)
    assert cli.main(["report", "--results", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "warning: " in err and err.strip().endswith("no usable results; run `make bench` first")
    assert cli.main(["report", "--results", str(tmp_path / "nonexistent")]) == 1
    assert (
        capsys.readouterr().err
        == f"lrbench report: error: --results {tmp_path / 'nonexistent'}: no such folder\n"
    )
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_charts_are_byte_for_byte_reproducible_and_rewritten_only_when_changed(tmp_path):
    _write_results(tmp_path)
    written, _ = report.run(str(tmp_path))
    files = sorted((tmp_path / "figures").iterdir()) + sorted((tmp_path / "tables").iterdir())
    assert {p.suffix for p in files} == {".png", ".svg", ".md"} and sorted(written) == files
    first = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    svg = (tmp_path / "figures" / "table1_box.svg").read_text()
    assert "<dc:date>" not in svg and 'id="p' in svg  # no creation date; hashed ids, salted
    assert report.run(str(tmp_path))[0] == []  # drawn again: the same bytes, not written
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == first


def test_committed_charts_regenerate_unchanged(tmp_path):
    """`lrbench report` on the committed results reproduces the committed charts and tables."""
    shutil.copytree(ROOT / "results" / "asv", tmp_path / "asv")
    shutil.copytree(ROOT / "results" / "paper", tmp_path / "paper")
    for sub in ("figures", "tables", "cpu"):  # cpu: the machines' facts, the seqpar rows
        shutil.copytree(ROOT / "results" / sub, tmp_path / sub)
    written, problems = report.run(str(tmp_path))
    assert written == [], written


def test_history_chart_from_results_of_several_commits(tmp_path):
    reg = "bench_regression.Regression.time_scan"
    asv = tmp_path / "asv"
    (asv / "box").mkdir(parents=True)
    cases = ["'cpu-serial T=65536 N=256 out'", "'auto T=16 N=1 fresh'"]
    (asv / "benchmarks.json").write_text(
        json.dumps({reg: dict(version="v1", unit="seconds", param_names=["case"], params=[cases])})
    )
    for date, commit in enumerate(["aaaa1111", "bbbb2222", "cccc3333"]):
        data = dict(
            commit_hash=commit,
            env_name="e",
            date=date,
            result_columns=COLUMNS,
            results={reg: [[1.0 + date, 2.0], [cases], "v1"] + [None] * (len(COLUMNS) - 3)},
        )
        (asv / "box" / f"{commit}-e.json").write_text(json.dumps(data))
    written, _ = report.run(str(tmp_path))
    assert {"history_box.png", "history_box.svg"} <= {p.name for p in written}
    assert report.run(str(tmp_path))[0] == []  # unchanged data: nothing rewritten


def test_every_chart_and_table_says_its_machine_commit_and_date(tmp_path):
    from PIL import Image

    _write_results(tmp_path)
    written, _ = report.run(str(tmp_path))
    want = "measured on box at commit abcdef12, 1970-01-01"
    for path in written:
        if path.suffix == ".png":
            assert Image.open(path).text.get("Description") == want, path
        elif path.suffix == ".svg":
            assert want in path.read_text(), path  # drawn in, and described
        else:
            assert want.capitalize() in path.read_text(), path


def test_a_chart_no_current_result_draws_is_removed(tmp_path):
    _write_results(tmp_path)
    report.run(str(tmp_path))
    orphan = tmp_path / "figures" / "speedup_vs_length_gone.png"
    orphan.write_bytes(b"old")
    (tmp_path / "tables" / "notes.txt").write_text("kept: not a chart or table")
    _, problems = report.run(str(tmp_path))
    assert not orphan.exists() and (tmp_path / "tables" / "notes.txt").exists()
    assert any("speedup_vs_length_gone.png: removed" in p for p in problems), problems


def test_committed_charts_and_tables_are_regenerated_byte_for_byte(tmp_path):
    """With the committed figures and tables deleted, `lrbench report` draws every one again, the
    same bytes, and nothing else."""
    shutil.copytree(ROOT / "results" / "asv", tmp_path / "asv")
    shutil.copytree(ROOT / "results" / "paper", tmp_path / "paper")
    shutil.copytree(ROOT / "results" / "cpu", tmp_path / "cpu")
    report.run(str(tmp_path))
    for sub in ("figures", "tables"):
        committed = {p.name: p.read_bytes() for p in (ROOT / "results" / sub).iterdir()}
        drawn = {p.name: p.read_bytes() for p in (tmp_path / sub).iterdir()}
        assert sorted(drawn) == sorted(committed)
        assert [n for n in committed if drawn[n] != committed[n]] == []
