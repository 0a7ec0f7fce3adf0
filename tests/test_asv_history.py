"""The asv history stays one series per machine and means what it says (no timing here).

- ``lrbench.asv_results.normalise``: result files of ``asv run -E existing:PATH`` (named after the
  venv's path) become the environment ``asv run``/``continuous`` use, so two folders' venvs give
  one series that ``asv compare`` pairs up; renamed benchmarks carry their history over.
- The suite: every benchmark has an explicit ``version``; nothing is "higher is better" (asv counts
  any rise as worse); every ``track_`` declares seconds or a time ratio; ``asv check`` passes;
  results/asv/benchmarks.json is the suite's current list. Each rule is also shown catching a
  broken copy of the suite.
- ``make bench``: its subset is asv's own -b selection, its estimate comes from the committed
  durations, and its progress lines follow asv's output.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from lrbench import asv_results as ar
from test_report import COLUMNS  # asv's result columns

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "asv.conf.json"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable))
REG = "bench_regression.Regression.time_scan"
CASES = ["'cpu-serial T=65536 N=256 out'", "'auto T=16 N=1 fresh'"]

asv = pytest.importorskip("asv")


def _commits(n=2) -> list[str]:
    out = subprocess.run(
        ["git", "rev-list", f"--max-count={n}", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    if out.returncode != 0 or len(out.stdout.split()) < n:
        pytest.skip("needs the git history of this checkout")
    return out.stdout.split()[::-1]


def _existing(
    folder: Path, commit: str, python: str, values, started=1, extra=None, machine="box", repeat=10
) -> Path:
    """A result file as `asv run -E existing:PYTHON --set-commit-hash COMMIT` writes it."""
    env = "existing-py" + python.replace("/", "_")
    scaled = lambda f: [v * f for v in values]  # noqa: E731  (intervals, quartiles)
    results = {
        REG: [
            values,
            [CASES],
            "1",
            started,
            2.0,
            scaled(0.9),
            scaled(1.1),
            scaled(0.98),
            scaled(1.02),
            [1] * len(values),
            [repeat] * len(values),
        ]
    }
    results.update(extra or {})
    data = {
        "commit_hash": commit,
        "env_name": env,
        "date": started,
        "params": {"machine": machine, "python": python},
        "python": python,
        "requirements": {},
        "env_vars": {},
        "result_columns": COLUMNS,
        "results": results,
        "durations": {"<build>": 1e-4},
        "version": 2,
    }
    path = folder / machine / f"{commit[:8]}-{env}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    (folder / machine / "machine.json").write_text(json.dumps({"machine": machine, "version": 1}))
    return path


def _index(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "benchmarks.json").write_text(
        json.dumps(
            {
                REG: {
                    "name": REG,
                    "version": "1",
                    "unit": "seconds",
                    "param_names": ["case"],
                    "params": [CASES],
                    "type": "time",
                },
                "version": 2,
            }
        )
    )


def _files(folder: Path, machine="box"):
    return sorted(p for p in (folder / machine).glob("*.json") if p.name != "machine.json")


# ---------------------------------------------------------------------------------------------
# One series per machine


def test_two_folders_venvs_become_one_series(tmp_path):
    """Two users' venvs (/home/ann/lrbench/.venv, /srv/ci/venv) give two environment names;
    normalise gives both the one `asv run`/`continuous` use, and `asv compare` pairs them."""
    c1, c2 = _commits()
    results = tmp_path / "results"
    _index(results)
    _existing(results, c1, "/home/ann/lrbench/.venv/bin/python", [0.010, 2e-5], started=1)
    _existing(results, c2, "/srv/ci/venv/bin/python", [0.020, 2e-5], started=2)
    assert len({json.loads(p.read_text())["env_name"] for p in _files(results)}) == 2

    done = ar.normalise(results, config=CONFIG, log=lambda _: None)
    assert len(done) == 2
    env = ar.configured_env(CONFIG)
    files = _files(results)
    assert [p.name for p in files] == sorted(ar.result_filename(c, env["name"]) for c in (c1, c2))
    data = [json.loads(p.read_text()) for p in files]
    assert {d["env_name"] for d in data} == {env["name"]}
    assert not any("/" in d["env_name"] for d in data)
    # asv publish draws one graph per params: identical now, and no interpreter path in them
    assert (
        data[0]["params"]
        == data[1]["params"]
        == {"machine": "box", "python": env["python"], **env["requirements"]}
    )
    assert ar.normalise(results, config=CONFIG, log=lambda _: None) == []  # idempotent

    # asv's own reader and comparison: the two commits pair up row by row
    conf = json.loads(
        "\n".join(l for l in CONFIG.read_text().splitlines() if not l.lstrip().startswith("//"))
    )
    conf.update(
        repo=str(ROOT),
        benchmark_dir=str(ROOT / "benchmarks"),
        results_dir=str(results),
        env_dir=str(tmp_path / "env"),
        html_dir=str(tmp_path / "html"),
    )
    (tmp_path / "asv.conf.json").write_text(json.dumps(conf))
    out = subprocess.run(
        [
            PYTHON,
            "-m",
            "asv",
            "--config",
            str(tmp_path / "asv.conf.json"),
            "compare",
            c1,
            c2,
            "--machine",
            "box",
            "--factor",
            "1.1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    row = next(l for l in out.stdout.splitlines() if "cpu-serial T=65536" in l)
    change, before, after, ratio, name = [c.strip() for c in row.split("|")[1:-1]]
    assert change == "+" and float(ratio) == 2.0, out.stdout  # paired: 2x worse, flagged
    assert "[" not in name  # one environment: no [env] suffix


def test_results_of_one_commit_from_two_venvs_are_merged(tmp_path):
    """The same commit measured from two folders: one file, each point the newer measurement,
    a point only the older one measured kept."""
    c1 = _commits(1)[0]
    results = tmp_path / "results"
    _index(results)
    _existing(results, c1, "/a/.venv/bin/python", [0.010, 3e-5], started=1)
    _existing(results, c1, "/b/.venv/bin/python", [0.012, float("nan")], started=2)
    ar.normalise(results, config=CONFIG, log=lambda _: None)
    [only] = _files(results)
    row = dict(zip(COLUMNS, json.loads(only.read_text())["results"][REG]))
    assert row["result"] == [0.012, 3e-5]


def test_a_venv_off_the_pins_is_named_by_its_versions(monkeypatch):
    """The name says what was measured: a runnable interpreter's installed versions, local
    labels (+cpu) aside; the pins when the interpreter is not here."""
    env = ar.configured_env(CONFIG)
    assert ar.canonical_env(env, "/nonexistent/python")["name"] == env["name"]
    pins = {k.split("+", 1)[1]: v for k, v in env["requirements"].items()}
    found = dict(pins, torch="2.14.0+cpu", tqdm=None)  # torch newer, tqdm missing
    monkeypatch.setattr(
        ar,
        "interpreter",
        lambda python, dists: {"python": "3.11", "versions": {d: found[d] for d in dists}},
    )
    got = ar.canonical_env(env, "/some/python")
    assert "pip+torch2.14.0" in got["name"] and "tqdm" not in got["name"]
    assert got["requirements"]["pip+torch"] == "2.14.0" and "pip+tqdm" not in got["requirements"]


@pytest.mark.skipif(not VENV_PYTHON.exists(), reason="needs the project's .venv")
def test_the_project_venv_gets_the_configured_name():
    env = ar.configured_env(CONFIG)
    assert ar.canonical_env(env, str(VENV_PYTHON))["name"] == env["name"]


def test_committed_results_are_one_series_per_machine():
    """One environment per machine, besides ``make peers``' second one (torch 2.14 for
    philtorch), which holds peer rows only."""
    for folder in sorted(p for p in (ROOT / "results" / "asv").iterdir() if p.is_dir()):
        names, peers_only = set(), set()
        for path in _files(folder.parent, folder.name):
            data = json.loads(path.read_text())
            if all(k.startswith("bench_peers.") for k in data["results"]):
                peers_only.add(data["env_name"])
            else:
                names.add(data["env_name"])
        assert len(names) == 1 and not any(n.startswith("existing-") for n in names), (
            folder,
            names,
        )
        assert not any(n.startswith("existing-") for n in peers_only), (folder, peers_only)


def test_a_renamed_benchmark_carries_its_history_inverted(tmp_path):
    """best / auto (higher is better) becomes auto / best: every value, interval end and
    quartile inverted (the ends swap), the version made explicit."""
    c1 = _commits(1)[0]
    results = tmp_path / "results"
    _index(results)
    old = "bench_cpu.AutoVsBest.track_best_over_auto_higher_is_better"
    h = "5237ccea1f797d0ab5f903c8e1d797ef303d194edc9812b2329f886ae1f0cdcb"
    row = [
        [0.5, float("nan"), 0.8, 1.0],
        [["16", "256"], ["1", "4"]],
        h,
        1,
        30.0,
        [0.4, None, 0.7, 0.9],
        [0.6, None, 0.9, 1.1],
        [0.45, None, 0.75, 0.95],
        [0.55, None, 0.85, 1.05],
    ]
    _existing(results, c1, "/a/.venv/bin/python", [0.01, 2e-5], extra={old: row})
    ar.normalise(results, config=CONFIG, log=lambda _: None)
    got = dict(
        zip(
            COLUMNS,
            json.loads(_files(results)[0].read_text())["results"][
                "bench_cpu.AutoVsBest.track_auto_over_best"
            ],
        )
    )
    assert got["version"] == "1"
    assert got["result"][0] == 2.0 and math.isnan(got["result"][1]) and got["result"][3] == 1.0
    assert got["result"][2] == pytest.approx(1.25)
    assert got["stats_ci_99_a"][0] == pytest.approx(1 / 0.6) and got["stats_ci_99_b"][0] == 2.5
    assert got["stats_q_25"][0] == pytest.approx(1 / 0.55)


def test_bandwidths_become_exact_times():
    point = {"backend": "cpu-serial", "TxN": "65536x256"}
    T, N = 65536 // 4, 256  # bench_bandwidth.shape on the CPU
    assert ar._scan_seconds(1.5, point) == pytest.approx(12 * T * N / 1.5e9)
    assert ar._copy_seconds(50.0, {"MB": 16}) == pytest.approx(2 * 16 * 2**20 / 50e9)
    assert ar._scan_over_copy(40.0, point) == 2.5


# ---------------------------------------------------------------------------------------------
# The suite's rules, each shown catching a broken copy

UNIT = re.compile(r"^(seconds|.+ / .+ time)$")
# The one track_ that is not a time: peak memory growth over the output's size (lower is better).
NOT_A_TIME = {
    "bench_memory.BroadcastGate.track_peak_growth_over_output": "peak growth / output size"
}


def _discover(bench_dir: Path) -> list:
    """asv_runner's discovery, in this process, of the suite in ``bench_dir``."""
    from asv_runner.discovery import disc_benchmarks

    sys.path.insert(0, str(bench_dir.parent))
    try:
        return list(disc_benchmarks(str(bench_dir)))
    finally:
        sys.path.remove(str(bench_dir.parent))


def suite_problems(benchmarks: list) -> list[str]:
    problems = []
    for b in benchmarks:
        explicit = [getattr(src, "version", None) for src in b._attr_sources]
        if not any(v is not None for v in explicit):
            problems.append(f"{b.name}: no explicit version (asv hashes the code)")
        if b.name.endswith("_higher_is_better") or "higher_is_better" in b.name:
            problems.append(f"{b.name}: 'higher is better' (asv counts any rise as worse)")
        if b.type == "track":
            unit = getattr(b, "unit", None)
            if not (UNIT.match(unit or "") or NOT_A_TIME.get(b.name) == unit):
                problems.append(f"{b.name}: unit {unit!r} is neither seconds nor a time ratio")
    return problems


@pytest.fixture(scope="module")
def suite():
    return _discover(ROOT / "benchmarks")


def test_every_benchmark_is_versioned_lower_is_better_and_timed(suite):
    assert len(suite) >= 20
    assert suite_problems(suite) == []
    assert not any(re.fullmatch(r"[0-9a-f]{64}", b.version) for b in suite)


def test_the_rules_catch_a_broken_suite(tmp_path):
    """A copy of the suite with one class's version removed and a GB/s 'higher is better'
    track_ added: each rule names it."""
    pkg = tmp_path / f"suite_{uuid.uuid4().hex[:8]}"
    pkg.mkdir()
    for f in (ROOT / "benchmarks").glob("*.py"):
        shutil.copy(f, pkg / f.name)
    text = (pkg / "bench_packed.py").read_text()
    assert '    version = "1"' in text
    (pkg / "bench_packed.py").write_text(
        text.replace('    version = "1"', "", 1)
        + """

class Throughput:
    version = "1"

    def track_GBps_higher_is_better(self):
        return 1.0
    track_GBps_higher_is_better.unit = "GB/s"
"""
    )
    problems = suite_problems(_discover(pkg))
    assert problems == [
        "bench_packed.PackedVsPadded.time_scan: no explicit version (asv hashes the code)",
        "bench_packed.Throughput.track_GBps_higher_is_better: 'higher is better' (asv counts any "
        "rise as worse)",
        "bench_packed.Throughput.track_GBps_higher_is_better: unit 'GB/s' is neither seconds nor "
        "a time ratio",
    ], problems


def test_committed_benchmark_index_is_the_suite(suite):
    """results/asv/benchmarks.json (what asv publish and compare read) lists exactly these
    benchmarks, versions and units: regenerate it with `asv run -E existing --dry-run -b
    just-discover` after changing the suite."""
    index = json.loads((ROOT / "results" / "asv" / "benchmarks.json").read_text())
    index.pop("version")
    assert {k: (m["version"], m.get("unit")) for k, m in index.items()} == {
        b.name: (b.version, getattr(b, "unit", None)) for b in suite
    }


def _asv_check(config: Path, cwd: Path):
    return subprocess.run(
        [PYTHON, "-m", "asv", "--config", str(config), "check", "-E", f"existing:{PYTHON}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_asv_check_passes():
    out = _asv_check(CONFIG, ROOT)
    assert out.returncode == 0 and "No problems found" in out.stdout, out.stdout + out.stderr


def test_asv_check_catches_a_broken_suite(tmp_path):
    """The same check on a copy whose benchmark takes the wrong parameters fails."""
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    for f in (ROOT / "benchmarks").glob("*.py"):
        shutil.copy(f, bench / f.name)
    text = (bench / "bench_packed.py").read_text()
    assert "def time_scan(self, T, layout):" in text
    (bench / "bench_packed.py").write_text(
        text.replace("def time_scan(self, T, layout):", "def time_scan(self, T):")
    )
    conf = json.loads(
        "\n".join(l for l in CONFIG.read_text().splitlines() if not l.lstrip().startswith("//"))
    )
    conf.update(
        repo=str(ROOT),
        benchmark_dir=str(bench),
        results_dir=str(tmp_path / "results"),
        env_dir=str(tmp_path / "env"),
        html_dir=str(tmp_path / "html"),
    )
    (tmp_path / "asv.conf.json").write_text(json.dumps(conf))
    out = _asv_check(tmp_path / "asv.conf.json", tmp_path)
    assert out.returncode != 0 and "PackedVsPadded" in out.stdout + out.stderr, out.stdout


# ---------------------------------------------------------------------------------------------
# make bench: subset, estimate, progress


def test_subset_is_asv_own_selection():
    """``selection`` picks the points asv's -b picks (asv/benchmarks.py), on the real index."""
    from asv.benchmarks import Benchmarks
    from asv.config import Config

    index = json.loads((ROOT / "results" / "asv" / "benchmarks.json").read_text())
    index.pop("version")
    theirs = Benchmarks(Config.load(str(CONFIG)), list(index.values()), regex=ar.DEFAULT_SUBSET)
    ours = ar.selection(index, ar.DEFAULT_SUBSET)
    assert set(ours) == set(theirs)
    assert {k: v for k, v in ours.items() if v is not None} == {
        k: theirs.benchmark_selection[k] for k in ours if theirs.benchmark_selection[k] is not None
    }
    # what the charts and README need is in it
    for must in [
        "bench_cpu.CPUGrid.time_scan",
        "bench_regression.Regression.time_scan",
        "bench_paper.Table1.time_forward",
        "bench_models.Table2.time_train_step",
        "bench_bandwidth.ScanBandwidth.track_scan_over_copy",
    ]:
        assert must in ours
    assert "bench_scan.ScanForwardBackward.time_forward_backward" not in ours


def test_make_bench_fits_15_minutes_by_the_committed_durations():
    _, _, est, total = ar.plan(ar.DEFAULT_SUBSET, machine="intel-xeon-2c")
    _, _, _, full = ar.plan(None, machine="intel-xeon-2c")
    assert all(v is not None for v, _ in est.values()), est
    assert total < 10 * 60 and full > total


def test_estimate_scales_by_the_points_chosen(tmp_path):
    results = tmp_path / "results"
    _index(results)
    c1 = _commits(1)[0]
    _existing(results, c1, "/a/python", [0.01, 2e-5], repeat=1)  # --quick: 2 s, 2 points
    index = json.loads((results / "benchmarks.json").read_text())
    ref = ar.reference_durations(results, "box")
    half = ar.estimate(index, ar.selection(index, [r"cpu-serial"]), ref)
    assert half[REG][0] == pytest.approx(1.0)


def test_progress_says_what_is_done_and_left():
    now = [0.0]
    out = io.StringIO()
    p = ar.Progress(
        {"bench_a.A.time_x": (10.0, "m"), "bench_b.B.track_y": (30.0, "m")},
        out=out,
        clock=lambda: now[0],
    )
    now[0] = 5.0
    p.feed("· Discovering benchmarks\n[50.00%] ··· bench_a.A.time_x")  # started, line open
    assert "[make bench]" not in out.getvalue()
    now[0] = 25.0
    p.feed("        ok\n[100.00%] ··· ...b.B.track_y")  # truncated name
    assert "1/2 benchmarks done in 25s; about 1m00s left" in out.getvalue()  # 20 s for 10: x2
    now[0] = 85.0
    p.heartbeat()
    assert "running bench_b.B.track_y for 1m00s" in out.getvalue().splitlines()[-1]
    p.feed(" 0.9\n")
    assert out.getvalue().endswith("[make bench] 2/2 benchmarks done in 1m25s; about 0s left\n")


def test_make_bench_command(capsys):
    """The plan and the asv command: existing env, quick, one round (asv's percentages reach
    100 %), stamped with HEAD, the subset's regexes."""
    ar.main(["bench", "--dry-run", "--machine", "intel-xeon-2c", "--python", PYTHON])
    out = capsys.readouterr().out
    cmd = next(l for l in out.splitlines() if " run -E existing:" in l)
    assert "--quick -a rounds=1" in cmd and "--set-commit-hash" in cmd
    assert cmd.count(" -b ") == len(ar.DEFAULT_SUBSET)
    assert re.search(r"expected \d+m\d\ds", out)


def test_the_re_timing_runs_only_points_the_first_pass_chose():
    """make bench times some classes again with 5 samples: only the subset's points of them
    (ScanForward's slow backends and bfloat16 are not in the subset, so not re-timed either)."""
    index = json.loads((ROOT / "results" / "asv" / "benchmarks.json").read_text())
    first = ar.selection(index, ar.DEFAULT_SUBSET)
    again = ar.selection(index, ar.retime_regexes(index, ar.DEFAULT_SUBSET, ar.RETIMED))
    assert again and set(again) <= set(first)
    for name, points in again.items():
        assert name.rsplit(".", 1)[0] in ar.RETIMED
        assert first[name] is None or set(points or []) <= set(first[name]), name
    scan = "bench_scan.ScanForward.time_forward"
    assert again[scan] == first[scan] and len(first[scan]) < len(ar._points(index[scan]["params"]))
