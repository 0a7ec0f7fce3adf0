"""``lrbench perfcheck``, the CI performance gate, on fabricated timings only: these tests never
time this machine (a loaded machine must not fail a unit test). The checks' ratios come from
patched check functions, or from a patched timing function run through the real checks."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from lrbench import cli, perfcheck
from lrbench.options import Failure

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = json.loads((ROOT / "lrbench" / "perf_thresholds.json").read_text())
INTEL = SHIPPED["machines"]["intel-xeon-2c"]["checks"]
HEALTHY = {c: want["measured"] for c, want in INTEL.items()}  # intel-xeon-2c's ratios
# pipeline_vs_serial with the pipeline's tasks run one after another, over the healthy ratio, on
# intel-xeon-2c (its note in the threshold file: 0.75 against 1.30).
ONE_THREAD = 0.75 / 1.30
STAMP = {"commit": "0123456789ab", "date": "2026-12-02T00:00:00+00:00"}


@pytest.fixture
def box(monkeypatch):
    """This machine made a fabricated 2-core "test-box" at load 0.5; returns a setter for load."""
    state = {"load": 0.5}
    monkeypatch.setattr(perfcheck, "this_machine", lambda: "test-box")
    monkeypatch.setattr(perfcheck, "load_average", lambda: state["load"])
    monkeypatch.setattr(perfcheck, "cores", lambda: 2)
    monkeypatch.setattr(perfcheck, "stamp", lambda: dict(STAMP))
    return state


def fabricate(monkeypatch, ratios: dict, scale: dict | None = None) -> None:
    """Each check returns its ratio from ``ratios`` (a number, or a list cycled over the trials),
    times ``scale[check]`` if given; nothing is timed."""
    for check, value in ratios.items():
        values = itertools.cycle(value if isinstance(value, list) else [value])
        factor = (scale or {}).get(check, 1.0)
        monkeypatch.setitem(perfcheck.CHECKS, check, lambda v=values, f=factor: next(v) * f)


def thresholds(path: Path, machine: str = "test-box", fraction: float = 0.6) -> Path:
    """A threshold file calibrated on ``machine`` at the healthy ratios, min = fraction of them."""
    checks = {
        c: {"min": round(fraction * m, 3), "measured": m, "calibrated_at": STAMP}
        for c, m in HEALTHY.items()
    }
    path.write_text(json.dumps({"machines": {machine: {"checks": checks}}}))
    return path


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        rc = cli.main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


# --- the gate -----------------------------------------------------------------------------------


def test_gate_passes_on_healthy_numbers(tmp_path, box, monkeypatch, capsys):
    fabricate(monkeypatch, HEALTHY)
    rc, out, err = _run(["perfcheck", "--thresholds", str(thresholds(tmp_path / "t.json"))], capsys)
    assert (rc, err) == (0, ""), (out, err)
    assert "thresholds calibrated on test-box" in out and out.count("\nok   ") == len(HEALTHY)
    assert out.rstrip().endswith("performance gate: passed")


@pytest.mark.parametrize("check", sorted(HEALTHY))
def test_gate_fails_on_a_2x_regression_of_each_check(tmp_path, box, monkeypatch, capsys, check):
    fabricate(monkeypatch, HEALTHY, scale={check: 0.5})
    rc, out, _ = _run(["perfcheck", "--thresholds", str(thresholds(tmp_path / "t.json"))], capsys)
    failed = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert rc == 1 and len(failed) == 1 and failed[0].startswith(f"FAIL {check}:"), out


def test_gate_fails_on_a_2x_regression_of_every_check_at_once(tmp_path, box, monkeypatch):
    fabricate(monkeypatch, HEALTHY, scale=dict.fromkeys(HEALTHY, 0.5))
    ok, rows = perfcheck.run(thresholds(tmp_path / "t.json"))
    assert not ok and not any(r["passed"] for r in rows) and len(rows) == len(HEALTHY)


def test_the_best_trial_counts(tmp_path, box, monkeypatch):
    """Noise that sinks one trial of three does not fail the gate; the best is the measurement."""
    fabricate(monkeypatch, {c: [0.4 * m, m, 0.45 * m] for c, m in HEALTHY.items()})
    ok, rows = perfcheck.run(thresholds(tmp_path / "t.json"), trials=3)
    assert ok and [r["measured"] for r in rows] == list(HEALTHY.values())
    assert all(len(r["trials"]) == 3 for r in rows)


def test_a_failure_names_ratio_threshold_machines_and_load(tmp_path, box, monkeypatch, capsys):
    box["load"] = 3.5
    fabricate(monkeypatch, HEALTHY, scale={"reverse_vs_forward": 0.5})
    rc, out, err = _run(["perfcheck", "--thresholds", str(thresholds(tmp_path / "t.json"))], capsys)
    line = next(line for line in out.splitlines() if line.startswith("FAIL"))
    assert rc == 1 and err == ""
    ratio, floor = (
        0.5 * HEALTHY["reverse_vs_forward"],
        round(0.6 * HEALTHY["reverse_vs_forward"], 3),
    )
    assert line.startswith(
        f"FAIL reverse_vs_forward: ratio {ratio:.3g} below threshold {floor:g} "
        "(calibrated on test-box, ran on test-box; load average 3.50 on 2 "
        "cores: may reflect load)"
    ), line
    assert "performance gate: FAILED: 1 of 4 ratios below threshold" in out
    assert "the result may reflect load" in out
    assert "slower" not in out


def test_a_failure_on_a_quiet_machine_does_not_blame_load(tmp_path, box, monkeypatch, capsys):
    fabricate(monkeypatch, HEALTHY, scale={"serial_vs_copy": 0.5})
    rc, out, _ = _run(["perfcheck", "--thresholds", str(thresholds(tmp_path / "t.json"))], capsys)
    assert rc == 1 and "load average 0.50 on 2 cores)" in out and "may reflect load" not in out


def test_a_slowed_backend_falls_below_the_shipped_threshold(box, monkeypatch):
    """Through the real check functions, on fabricated timings (intel-xeon-2c's healthy ratios):
    cpu-chunked made 8x slower fails both of its checks and only those, on the shipped file."""
    H = HEALTHY
    seconds = {
        ("cpu-serial", 1 << 16, 256, False): 0.0154,
        ("copy",): 0.0154 * H["serial_vs_copy"],
        ("cpu-serial", 1 << 16, 256, True): 0.0154 / H["reverse_vs_forward"],
        ("cpu-serial", 1 << 22, 1, False): 0.01 * H["chunked_vs_serial"],
        ("cpu-chunked", 1 << 22, 1, False): 0.01,
        ("cpu-serial", 1 << 19, 8, False): 0.01 * H["pipeline_vs_serial"],
        ("cpu-chunked", 1 << 19, 8, False): 0.01,
    }
    slow = {"cpu-chunked": 1.0}
    monkeypatch.setattr(perfcheck, "this_machine", lambda: "intel-xeon-2c")
    monkeypatch.setattr(perfcheck, "median_time", lambda fn: seconds[("copy",)])
    monkeypatch.setattr(
        perfcheck,
        "_scan_seconds",
        lambda backend, T, N, reverse=False: seconds[(backend, T, N, reverse)]
        * slow.get(backend, 1.0),
    )
    ok, rows = perfcheck.run(trials=1)
    assert ok and {r["check"]: r["measured"] for r in rows} == pytest.approx(HEALTHY)
    slow["cpu-chunked"] = 8.0
    ok, rows = perfcheck.run(trials=1)
    assert not ok
    failed = {r["check"] for r in rows if not r["passed"]}
    assert failed == {"chunked_vs_serial", "pipeline_vs_serial"}


@pytest.mark.parametrize("source", ["shipped", "calibrated"])
def test_the_pipeline_run_one_task_after_another_falls_below_its_threshold(
    tmp_path, box, monkeypatch, source
):
    """Replaces a test that timed this machine: the ratio a single-threaded pipeline gives (0.75
    where the pipeline gives 1.30, on intel-xeon-2c) fails the shipped threshold and any
    threshold --calibrate sets from healthy trials."""
    if source == "shipped":
        monkeypatch.setattr(perfcheck, "this_machine", lambda: "intel-xeon-2c")
        spec = None
    else:
        spec = tmp_path / "t.json"
        fabricate(
            monkeypatch, {c: [m, 1.02 * m, 0.98 * m, m, 1.01 * m] for c, m in HEALTHY.items()}
        )
        perfcheck.calibrate(spec)
    fabricate(monkeypatch, HEALTHY, scale={"pipeline_vs_serial": ONE_THREAD})
    ok, rows = perfcheck.run(spec)
    assert not ok and [r["check"] for r in rows if not r["passed"]] == ["pipeline_vs_serial"]


# --- the threshold file -------------------------------------------------------------------------


def test_json_holds_every_row(tmp_path, box, monkeypatch, capsys):
    fabricate(
        monkeypatch, {c: [0.9 * m, m] for c, m in HEALTHY.items()}, scale={"serial_vs_copy": 0.5}
    )
    out = tmp_path / "deep" / "perf.json"
    rc, text, _ = _run(
        [
            "perfcheck",
            "--thresholds",
            str(thresholds(tmp_path / "t.json")),
            "--trials",
            "2",
            "--json",
            str(out),
        ],
        capsys,
    )
    assert rc == 1 and f"wrote {out}" in text
    report = json.loads(out.read_text())
    assert (report["mode"], report["passed"], report["machine"], report["trials"]) == (
        "gate",
        False,
        "test-box",
        2,
    )
    rows = {r["check"]: r for r in report["rows"]}
    assert set(rows) == set(HEALTHY)
    for check, r in rows.items():
        assert {
            "check",
            "measured",
            "trials",
            "min",
            "machine",
            "calibrated_on",
            "load",
            "passed",
            "commit",
        } <= set(r)
        assert r["trials"] == pytest.approx([0.9 * r["measured"], r["measured"]])
        assert (r["machine"], r["calibrated_on"], r["load"], r["commit"]) == (
            "test-box",
            "test-box",
            0.5,
            STAMP["commit"],
        )
        assert r["passed"] == (check != "serial_vs_copy")
    assert not list(out.parent.glob(".*.tmp"))  # written atomically


# Facts of both machine kinds (lrbench.hwfacts) and the ratios each gave, quiet. intel-xeon-2c:
# measured 2026-12-07 and its calibration. amd-epyc-2c: issue 25/28 (two threads copy at 0.81x one,
# about 16 GB/s; compute scales 1.96x; cpu-serial at N = 1 about 2.15 ns an element; perfcheck
# quiet: chunked 1.31-1.35, pipeline 0.72, reverse 0.60). Not measured there: serial_vs_copy
# (it passed min 0.4 at c6f9507; at 5a7871a5 its kernel ran at 1.17 of a copy: 0.9 assumed), the
# hand-off (250 us assumed: its fixed costs were 3x the Xeon's) and the chain latency.
FACTS = {
    "intel-xeon-2c": dict(
        copy1_GBps=14.2, copyP_GBps=30.3, handoff_us=119, chain_ns=1.67, compute_scale=1.91
    ),
    "amd-epyc-2c": dict(
        copy1_GBps=19.8, copyP_GBps=16.0, handoff_us=250, chain_ns=2.15, compute_scale=1.96
    ),
}
QUIET = {
    "intel-xeon-2c": HEALTHY,
    "amd-epyc-2c": dict(
        serial_vs_copy=0.9, chunked_vs_serial=1.31, pipeline_vs_serial=0.72, reverse_vs_forward=0.6
    ),
}


@pytest.fixture
def uncalibrated(box, monkeypatch):
    """The gate on a machine kind absent from the shipped file, with that kind's facts."""
    from lrbench import hwfacts

    def as_kind(kind):
        monkeypatch.setattr(perfcheck, "this_machine", lambda: f"{kind}-uncalibrated")
        monkeypatch.setattr(hwfacts, "facts", lambda machine=None: {"facts": FACTS[kind]})
        monkeypatch.setattr(perfcheck.torch, "get_num_threads", lambda: 2)

    return as_kind


def test_unknown_machine_is_held_to_the_model_from_its_facts_and_says_so(
    tmp_path, uncalibrated, monkeypatch, capsys
):
    uncalibrated("amd-epyc-2c")
    fabricate(monkeypatch, dict(QUIET["amd-epyc-2c"], reverse_vs_forward=0.2))
    rc, out, _ = _run(["perfcheck", "--json", str(tmp_path / "p.json")], capsys)
    assert rc == 1
    assert "no calibration for amd-epyc-2c-uncalibrated" in out and "measured facts" in out
    assert (
        "FAIL reverse_vs_forward: ratio 0.2 below threshold 0.5 (calibrated on none: default, "
        "1 predicted from this machine's facts, ran on amd-epyc-2c-uncalibrated;"
    ) in out
    rows = {r["check"]: r for r in json.loads((tmp_path / "p.json").read_text())["rows"]}
    assert {r["calibrated_on"] for r in rows.values()} == {None}
    for check, r in rows.items():
        fraction = SHIPPED["default"]["checks"][check]["model"]
        assert r["min"] == pytest.approx(fraction * r["predicted_ratio"], rel=1e-2)
    assert rows["pipeline_vs_serial"]["predicted_ratio"] < 1  # its cores add no bandwidth
    assert "predicted 1.6" in out or "predicted 1.7" in out  # chunked_vs_serial's line


@pytest.mark.parametrize("kind", sorted(FACTS))
def test_the_default_passes_each_kind_quiet(uncalibrated, monkeypatch, kind):
    uncalibrated(kind)
    fabricate(monkeypatch, QUIET[kind])
    ok, rows = perfcheck.run()
    assert ok, [(r["check"], r["measured"], r["min"]) for r in rows]


# intel-xeon-2c's N = 1 three-pass schedule runs at 2x what the model predicts, so only its own
# calibration catches a 2x regression of chunked_vs_serial there (the file's "about" says so).
MODEL_BLIND = {("intel-xeon-2c", "chunked_vs_serial")}


@pytest.mark.parametrize("kind", sorted(FACTS))
@pytest.mark.parametrize("check", sorted(perfcheck.CHECKS))
def test_the_default_fails_a_2x_regression_of_each_kind(uncalibrated, monkeypatch, kind, check):
    uncalibrated(kind)
    fabricate(monkeypatch, QUIET[kind], scale={check: 0.5})
    ok, rows = perfcheck.run()
    failed = {r["check"] for r in rows if not r["passed"]}
    assert failed == (set() if (kind, check) in MODEL_BLIND else {check})


def test_a_custom_file_without_defaults_uses_the_packages(tmp_path, uncalibrated, monkeypatch):
    uncalibrated("intel-xeon-2c")
    fabricate(monkeypatch, HEALTHY)
    ok, rows = perfcheck.run(thresholds(tmp_path / "t.json", machine="another-box"))
    assert ok and {r["calibrated_on"] for r in rows} == {None}
    assert all(r["predicted_ratio"] is not None for r in rows)


def test_a_default_min_is_kept_as_written(tmp_path, box, monkeypatch):
    """A file's default may give plain mins: no facts are measured for it."""
    from lrbench import hwfacts

    monkeypatch.setattr(hwfacts, "facts", lambda *a: pytest.fail("facts measured for plain mins"))
    fabricate(monkeypatch, HEALTHY)
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps({"machines": {}, "default": {"checks": {"serial_vs_copy": {"min": 0.3}}}})
    )
    ok, rows = perfcheck.run(path)
    assert ok and [(r["check"], r["min"]) for r in rows] == [("serial_vs_copy", 0.3)]


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "no such file"),
        ("{", "not JSON (line 1 column 2"),
        ('{"checks": {}}', 'expected an object with a "machines" object'),
        (
            '{"machines": {"b": {"checks": {"nope": {"min": 1}}}}}',
            "machines.b: unknown check 'nope'",
        ),
        (
            '{"machines": {"b": {"checks": {"serial_vs_copy": {"min": "0.4"}}}}}',
            "machines.b.serial_vs_copy.min: expected a positive number, got '0.4'",
        ),
        (
            '{"machines": {}, "default": {"checks": {"serial_vs_copy": {"model": 1.5}}}}',
            "default.serial_vs_copy.model: expected a fraction in (0, 1], got 1.5",
        ),
    ],
)
def test_a_bad_thresholds_file_is_one_line_naming_it(
    tmp_path, box, monkeypatch, capsys, text, message
):
    monkeypatch.setattr(perfcheck, "measure", lambda *a: pytest.fail("timed despite a bad file"))
    path = tmp_path / "t.json"
    if text is not None:
        path.write_text(text)
    rc, out, err = _run(["perfcheck", "--thresholds", str(path)], capsys)
    assert rc == 1 and out == "" and err.count("\n") == 1
    assert err.startswith(f"lrbench perfcheck: error: --thresholds {path}: {message}"), err


def test_an_unwritable_json_fails_before_any_timing(tmp_path, box, monkeypatch, capsys):
    monkeypatch.setattr(perfcheck, "measure", lambda *a: pytest.fail("timed despite a bad --json"))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc, _, err = _run(["perfcheck", "--json", str(blocker / "perf.json")], capsys)
    assert rc == 1 and err.startswith(
        f"lrbench perfcheck: error: --json {blocker / 'perf.json'}: cannot write there"
    )
    rc, _, err = _run(["perfcheck", "--json", str(tmp_path)], capsys)
    assert (
        rc == 1
        and err == f"lrbench perfcheck: error: --json {tmp_path}: is a folder, expected a file\n"
    )


def test_the_shipped_file_keeps_intel_and_leaves_amd_uncalibrated():
    spec = perfcheck.load()
    intel = spec["machines"]["intel-xeon-2c"]["checks"]
    assert set(intel) == set(perfcheck.CHECKS)
    assert all(0 < w["min"] < w["measured"] for w in intel.values())
    assert "amd-epyc-2c" not in spec["machines"]
    assert set(spec["default"]["checks"]) == set(perfcheck.CHECKS)


def test_every_shipped_calibration_fails_a_2x_regression():
    for machine, entry in perfcheck.load()["machines"].items():
        assert perfcheck.weak_checks(entry["checks"]) == [], machine


def test_the_gate_notes_thresholds_a_2x_regression_would_pass(tmp_path, box, monkeypatch, capsys):
    """intel-xeon-2c's first thresholds (serial_vs_copy 0.4 at 0.86 measured, chunked_vs_serial
    1.2 at 2.78) were below half the measured ratio: the gate says so."""
    path = thresholds(tmp_path / "t.json")
    spec = json.loads(path.read_text())
    checks = spec["machines"]["test-box"]["checks"]
    checks["serial_vs_copy"].update(min=0.4, measured=0.86)
    checks["chunked_vs_serial"].update(min=1.2, measured=2.78)
    path.write_text(json.dumps(spec))
    fabricate(monkeypatch, HEALTHY)
    rc, out, _ = _run(["perfcheck", "--thresholds", str(path)], capsys)
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert rc == 0 and len(notes) == 2 and "serial_vs_copy's threshold 0.4" in notes[0]


# --- calibrating --------------------------------------------------------------------------------


def _noisy(spread: float = 0.03) -> dict:
    """Five quiet trials per check around the healthy ratio."""
    return {c: [m * (1 + spread * k) for k in (0, 1, -1, 0.5, -0.5)] for c, m in HEALTHY.items()}


def test_calibrate_writes_thresholds_a_2x_regression_fails(tmp_path, box, monkeypatch, capsys):
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps(
            {
                "about": "kept",
                "machines": {
                    "other-box": {"checks": {"serial_vs_copy": {"min": 0.5, "measured": 0.9}}}
                },
            }
        )
    )
    fabricate(monkeypatch, _noisy())
    rc, out, _ = _run(
        ["perfcheck", "--calibrate", "--thresholds", str(path), "--json", str(tmp_path / "c.json")],
        capsys,
    )
    assert rc == 0 and f"wrote its entry into {path}" in out
    spec = json.loads(path.read_text())
    assert spec["about"] == "kept" and "other-box" in spec["machines"]  # others kept
    checks = spec["machines"]["test-box"]["checks"]
    assert set(checks) == set(perfcheck.CHECKS)
    for check, want in checks.items():
        assert want["min"] > want["measured"] / 2, (check, want)  # a 2x regression fails
        assert want["min"] <= min(want["trials"])  # the noise passes
        assert want["measured"] == pytest.approx(HEALTHY[check], rel=1e-2)
        assert len(want["trials"]) == 5 and want["calibrated_at"] == STAMP
    assert json.loads((tmp_path / "c.json").read_text())["mode"] == "calibrate"
    fabricate(monkeypatch, _noisy())  # the noise passes the gate
    assert perfcheck.run(path)[0]
    for check in HEALTHY:  # each 2x regression fails
        fabricate(monkeypatch, _noisy(), scale={check: 0.5})
        assert [r["check"] for r in perfcheck.run(path)[1] if not r["passed"]] == [check]


def test_calibrate_refuses_trials_too_noisy_to_tell_a_2x_regression(
    tmp_path, box, monkeypatch, capsys
):
    path = tmp_path / "t.json"
    fabricate(monkeypatch, {**HEALTHY, "chunked_vs_serial": [2.8, 1.4, 2.8, 2.7, 2.9]})
    rc, _, err = _run(["perfcheck", "--calibrate", "--thresholds", str(path)], capsys)
    assert rc == 1 and not path.exists()
    assert err.startswith(
        "lrbench perfcheck: error: --calibrate: chunked_vs_serial: trials 2.8, "
        "1.4, 2.8, 2.7, 2.9 (median 2.8): the worst trial is 50% of the median"
    )
    assert "2x regression" in err and err.count("\n") == 1


@pytest.mark.parametrize("broken", ["fraction", "threshold_for"])
def test_a_calibration_that_sets_min_too_low_is_caught(tmp_path, box, monkeypatch, broken):
    """A broken calibrate (min at 0.45 of the median: a 2x regression would pass) writes nothing."""
    path = tmp_path / "t.json"
    path.write_text('{"machines": {}}')
    fabricate(monkeypatch, _noisy())
    if broken == "fraction":
        monkeypatch.setattr(perfcheck, "FRACTION", 0.45)
    else:
        monkeypatch.setattr(
            perfcheck,
            "threshold_for",
            lambda check, values: {
                "min": 0.45 * values[0],
                "measured": values[0],
                "trials": values,
            },
        )
    with pytest.raises(Failure, match="2x regression"):
        perfcheck.calibrate(path)
    assert path.read_text() == '{"machines": {}}'


def test_calibrate_needs_a_thresholds_file(box, monkeypatch, capsys):
    monkeypatch.setattr(perfcheck, "measure", lambda *a: pytest.fail("timed without --thresholds"))
    rc, _, err = _run(["perfcheck", "--calibrate"], capsys)
    assert rc == 1
    assert err.startswith("lrbench perfcheck: error: --calibrate: needs --thresholds FILE")


def test_calibrate_leaves_a_bad_existing_file_alone(tmp_path, box, monkeypatch, capsys):
    monkeypatch.setattr(perfcheck, "measure", lambda *a: pytest.fail("timed despite a bad file"))
    path = tmp_path / "t.json"
    path.write_text("{")
    rc, _, err = _run(["perfcheck", "--calibrate", "--thresholds", str(path)], capsys)
    assert rc == 1 and "not JSON" in err and path.read_text() == "{"
