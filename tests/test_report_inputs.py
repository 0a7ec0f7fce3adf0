"""``lrbench report`` on result files that are valid JSON of the wrong shape: each is reported in
one line and skipped, and the rest still plots (defect: it aborted)."""

from __future__ import annotations

import json

import pytest

from lrbench import report
from test_report import SCAN, _write_results

WRONG = {
    "text date": lambda d: d.update(date="yesterday"),
    "number for a row": lambda d: d["results"].update({SCAN: 5}),
    "results a list": lambda d: d.update(results=[1]),
    "file a list": lambda d: d.clear() or d.update(_list=True),
    "columns a number": lambda d: d.update(result_columns=3),
    "params not lists": lambda d: d["results"][SCAN].__setitem__(1, 7),
    "result a string": lambda d: d["results"][SCAN].__setitem__(0, "fast"),
    "commit a number": lambda d: d.update(commit_hash=12),
}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_a_result_file_of_the_wrong_shape_is_reported_and_skipped(tmp_path, case):
    asv = _write_results(tmp_path)
    good = asv / "box" / "abcdef12-existing.json"
    data = json.loads(good.read_text())
    WRONG[case](data)
    bad = asv / "box" / "bad-existing.json"
    bad.write_text(json.dumps([1] if data.get("_list") else data))
    df, problems = report.load(asv)
    assert any(p.startswith(f"{bad}: ") for p in problems), problems
    assert all("\n" not in p for p in problems)
    assert set(df.commit) == {"abcdef12"}  # the good file still loads
    written, _ = report.run(str(tmp_path))
    assert any(p.name == "speedup_vs_length_box.png" for p in written)


@pytest.mark.parametrize("index", [[1], {"x": 1}, "text"])
def test_a_benchmark_index_of_the_wrong_shape_is_an_error_that_says_so(tmp_path, index):
    asv = _write_results(tmp_path)
    (asv / "benchmarks.json").write_text(json.dumps(index))
    df, problems = report.load(asv)
    assert df.empty or "value" in df
    assert any("benchmarks.json" in p for p in problems), problems
