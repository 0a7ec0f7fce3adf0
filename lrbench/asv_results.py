"""asv's result files kept as one history per machine, and ``make bench``: its benchmark subset,
its time estimate and its progress.

asv names an ``-E existing:PYTHON`` environment after the interpreter's path
(``existing-py_work_main_.venv_bin_python``), and both ``asv compare`` (which pairs results by
machine and environment name) and ``asv publish`` (which draws one graph per machine, Python and
requirement versions) split the history wherever the venv lives. ``normalise`` rewrites such
files to the name asv gives the configured environment (``asv.conf.json``: one virtualenv of
pinned requirements), ``virtualenv-py3.11-pip+matplotlib3.11.2-...``, with the Python version and
the requirement versions where the path was; when the interpreter still exists, its installed
versions are read and used (a venv that differs from the pins gets a name that says so). Results
of one commit that then share a name are merged, the newer measurement of each point winning.
``normalise`` also carries results of renamed benchmarks over to their new names (``RENAMES``)
and gives each known asv code hash the explicit version that replaced it (``VERSIONS``). It is
idempotent: ``make bench`` and ``benchmarks/gpu.sh`` run it after every asv run.

    python -m lrbench.asv_results normalise [--results results/asv] [--machine NAME]
    python -m lrbench.asv_results estimate [--full | -b REGEX ...]
    python -m lrbench.asv_results bench [--full | -b REGEX ...] [--launch-method M] [--dry-run]

``bench`` (what ``make bench`` runs) times ``DEFAULT_SUBSET`` with ``asv run -E existing --quick``
(``--full``: the whole suite), prints the time it expects from the durations asv recorded in the
committed results, echoes asv's output with a line after each benchmark saying how many are done
and about how long is left, stamps the results with HEAD and normalises them.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import math
import os
import re
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path

from . import atomic

# The checkout: this package's parent (an editable install, or PYTHONPATH=the tree as gpu.sh sets),
# else the current folder.
ROOT = next(
    (
        p
        for p in (Path(__file__).resolve().parent.parent, Path.cwd())
        if (p / "asv.conf.json").is_file()
    ),
    Path.cwd(),
)
CONFIG = ROOT / "asv.conf.json"
RESULTS = ROOT / "results" / "asv"
REFERENCE_MACHINE = "intel-xeon-2c"  # whose durations estimate a machine without results

# ``make bench``'s default benchmarks (asv -b regexes, matched as asv does: against
# "name(param, ...)", so a regex can pick parameter points). They cover what the charts, tables
# and README use: the fp32 out= forward grid of the serial/parallel pairs (speedup-vs-length
# chart, scan table), scan time over copy time and copy time (bandwidth chart), Table 1 and Table 2
# and the heatmap, the Regression subset (history chart), every bench_cpu row (auto's rule from
# CPUGrid, AutoVsBest, ReverseOverForward, AllCoresOverOne, FirstTouch), the CPU kernel ladder
# (bench_kernels: the kernels table), peers, memory, packed.
# GPU points are listed too: on a CPU machine they are n/a at once. Left out (``--full``, i.e.
# ``make bench FULL=1``): bfloat16, fresh outputs and the slow generic backends (torch-loop,
# torch-assoc, log-space) of ScanForward, all of ScanForwardBackward, the slow backends of
# ScanBandwidth and torch's compiled scan among the peers (30-60 s of compiling a shape;
# LRBENCH_BENCH_SKIP_COMPILE=1 leaves it out of AutoVsPeers too).
PAIRS = "cpu-serial|cpu-chunked|cuda-serial|cuda-paper|cuda-scan|triton-scan"
DEFAULT_SUBSET = [
    rf"^bench_scan\.ScanForward\.time_forward\('({PAIRS})', \d+, \d+, 'float32', 'out'\)$",
    rf"^bench_bandwidth\.ScanBandwidth\.track_\w+\('({PAIRS})', ",
    r"^bench_bandwidth\.Copy\.",
    r"^bench_peers\.Peers\.time_forward\('(auto|jax-scan|jax-associative-scan|torchlpc|philtorch)', ",
    r"^bench_peers\.AutoVsPeers\.",
    r"^bench_(cpu|kernels|paper|models|regression|memory|packed|compare)\.",
]
FIXED_SECONDS = 25.0  # asv's discovery (imports torch) and its forkserver start


# ---------------------------------------------------------------------------------------------
# Renamed benchmarks and explicit versions


def _backend_scale(backend: str) -> float:
    """bench_bandwidth.shape: T x 32 on the GPU, T / 4 on the CPU."""
    return 32 if backend.startswith(("cuda-", "triton-")) else 0.25


def _invert(value, point):
    return 1.0 / value


def _copy_seconds(gbps, point):
    """GB/s of 2 * MB * 2^20 bytes moved -> seconds."""
    return 2 * (point["MB"] << 20) / (gbps * 1e9)


def _scan_seconds(gbps, point):
    """GB/s of 12 T N bytes -> seconds."""
    T, N = map(int, point["TxN"].split("x"))
    return 12 * int(T * _backend_scale(point["backend"])) * N / (gbps * 1e9)


def _scan_over_copy(percent, point):
    """% of copy bandwidth -> scan time / copy time."""
    return 100.0 / percent


# old name -> (new name, value transform). Each was "higher is better", which asv cannot express
# (it counts any rise as a regression): the new benchmark measures the inverse, and the transform
# turns an old value into exactly the value the new benchmark would have recorded.
RENAMES = {
    "bench_bandwidth.Copy.track_copy_GBps_higher_is_better": (
        "bench_bandwidth.Copy.track_copy_seconds",
        _copy_seconds,
    ),
    "bench_bandwidth.ScanBandwidth.track_percent_of_copy_higher_is_better": (
        "bench_bandwidth.ScanBandwidth.track_scan_over_copy",
        _scan_over_copy,
    ),
    "bench_bandwidth.ScanBandwidth.track_scan_GBps_higher_is_better": (
        "bench_bandwidth.ScanBandwidth.track_scan_seconds",
        _scan_seconds,
    ),
    "bench_cpu.AutoVsBest.track_best_over_auto_higher_is_better": (
        "bench_cpu.AutoVsBest.track_auto_over_best",
        _invert,
    ),
    "bench_cpu.AutoVsBest.track_worst_best_over_auto_higher_is_better":  # retired in 41141ac
    ("bench_cpu.AutoVsBest.track_worst_auto_over_best", _invert),
    "bench_cpu.AllCoresOverOne.track_copy_all_cores_over_one": (
        "bench_cpu.AllCoresOverOne.track_copy_time_all_cores_over_one",
        _invert,
    ),
    "bench_peers.AutoVsPeers.track_worst_peer_over_auto_higher_is_better": (
        "bench_peers.AutoVsPeers.track_auto_over_fastest_peer",
        _invert,
    ),
}

# benchmark -> {asv's code hash: the explicit version now set on it}. A hash maps to the version
# whose measurement it made (refactors of the benchmark's code changed the hash, not the
# measurement). Hashes not listed stay as they are: not comparable with the explicit versions.
# amd-epyc-2c's rows at 5a7871a5 of Copy, ScanBandwidth and ScanForward predate the GPU buffer
# sizes and ScanForward's output axis, so they keep their hashes.
VERSIONS = {
    "bench_bandwidth.Copy.time_copy": {
        "8ef6746515d5cbd00ca634378301cd5a5b3f9bad935d6e19e74c60dd2be85966": "1"
    },
    "bench_bandwidth.Copy.track_copy_seconds": {
        "396dfac452fa48c95124e5432022481fe587277b56968d3b7ed90d648279f4a5": "1"
    },
    "bench_bandwidth.ScanBandwidth.track_scan_over_copy": {
        "09f8b1c55a050151d6df3fa6244c22ea5650d42d606bf26767e0d020ab37b09e": "1"
    },
    "bench_bandwidth.ScanBandwidth.track_scan_seconds": {
        "57585281de2a34291fea1ffec3a898490c24cdc9ec7e1da8c98a255ae643cd55": "1"
    },
    "bench_compare.AnchorShape.time_forward": {
        "2cb15897984bbd204cd1671675a4506a3d3a619ecd42fd019644be8c336d12aa": "1"
    },
    "bench_cpu.AllCoresOverOne.track_copy_time_all_cores_over_one": {
        "cf838d25489d2b3e991050c5270b1cfa3165329e451aa65645c7d0ef5adca54d": "1"
    },
    "bench_cpu.AutoVsBest.track_auto_over_best":  # 41141ac; 205e0b6 (a refactor)
    {
        "b2e7da438ecf3430d6e14d63ec280eaf0be7f3ef634cb7b57f6e44ffa275b69e": "1",
        "5237ccea1f797d0ab5f903c8e1d797ef303d194edc9812b2329f886ae1f0cdcb": "1",
    },
    "bench_cpu.AutoVsBest.track_worst_auto_over_best":  # one median each; 3 rounds (6de92e7)
    {
        "fefd3c18305f62770e66ca53ea84c254e8ac88376bf070fd6e6543bc902cd833": "1",
        "74ff77631a14316b0a13bc9832ea4a3e7b908e783e5496772b1e95291161bc73": "2",
    },
    "bench_cpu.CPUGrid.time_scan": {
        "d1079deff64fec89a71c8770cf2407952f6146708ff571664be8dc54ec6c7692": "1"
    },
    "bench_cpu.FirstTouch.time_fill": {
        "5264469216f03f03dd40a99644533d2dbf0f7c9f6ab345ea288da8f074584854": "1"
    },
    "bench_cpu.ReverseOverForward.track_reverse_over_forward": {
        "ac61c8f203aa4bbefc9658d7eadcf02d49d2022c3ea829ad37b83480ad6f1778": "1"
    },
    "bench_memory.BroadcastGate.peakmem_broadcast_gate": {
        "010b77b1353f73898243344f85c9b3148a2c65ac3824be84f30454b8422a32a4": "1"
    },
    "bench_memory.BroadcastGate.track_peak_growth_over_output": {
        "a2368324f3ad8487840b9f748b5933011c6a1a3cafd348ca50c0b4938c2f07f0": "1"
    },
    "bench_models.Heatmap.time_train_step": {
        "00454151330ce8ef0a539d942b3ffdae377b7ea7f19f4d8e7e5de6740ca97f0a": "1"
    },
    "bench_models.Table2.time_train_step": {
        "087ed50b2aa03fb0bab84a38ae7ea951a7016edf6db5e33c0369e1eabdfa2598": "1"
    },
    "bench_packed.PackedVsPadded.time_scan": {
        "ca5cdbca494822636c5e111bd7177b9ec9ad57c609f888ea305668fe9ad1f279": "1"
    },
    "bench_paper.Table1.time_forward": {
        "efbe9167bf072dc70e0cc90e5c0dc8ea0ee5bfeb3db3bb81eff4e4426d55cb3c": "1"
    },
    "bench_peers.AutoVsPeers.track_auto_over_fastest_peer":  # one median each; 3 rounds (aad415b)
    {
        "6ad88fcc77dd388c23af208f26c526ad2c18a6a3fb0aac6cb8ae85d521b111b1": "1",
        "c01bc2f1e65183b0630f893cf029de6dc24df790c16b2b3fd327e06259aacd96": "1",
        "d859f4f8ed4d84d81a15fe64842ea227569942a7b81c3c9bb5ca1a463a110fd4": "2",
        "44190d706baba0ecbbaf7f661b5387cfc71bf56a419b5f05ee68457d0eac83ad": "2",
    },
    "bench_peers.Peers.time_forward": {
        "30da91a51b5e63e0733b9af684e42cdbd081909eebd7b6f1b036b963d5d47b1b": "1"
    },
    "bench_regression.Regression.time_scan": {
        "8d172bbb5f530e752f5002a4b84764606f3fadf5c4e813df2d5251d5427f1bbe": "1"
    },
    "bench_scan.ScanForward.time_forward": {
        "6025beb259839c816e110d7386116ea6a26f52b331059aaca412a4e6bc6e3da6": "1"
    },
    "bench_scan.ScanForwardBackward.time_forward_backward": {
        "3897442532f186f71da1ba2c3784813ca95132a8ab7899d9d86ee583635442b3": "1"
    },
}


# ---------------------------------------------------------------------------------------------
# Environment names


def configured_env(config: Path = CONFIG) -> dict:
    """The environment asv run/continuous build from ``config``: tool, name, python, requirements,
    env_vars (asv's own code computes them, so the names are asv's)."""
    from asv.config import Config
    from asv.environment import get_environments

    conf = Config.load(str(config))
    envs = list(get_environments(conf, None, verbose=False))
    if len(envs) != 1:
        raise ValueError(f"{config}: {len(envs)} environments in the matrix; normalise expects one")
    env = envs[0]
    return dict(
        tool=env.tool_name,
        name=env.name,
        python=env.python,
        requirements=dict(env.requirements),
        env_vars=dict(env.env_vars),
        tagged_env_vars=dict(env._tagged_env_vars),
    )


_QUERY = """import importlib.metadata as m, json, sys
def v(d):
    try:
        return m.version(d)
    except m.PackageNotFoundError:
        return None
print(json.dumps({"python": "%d.%d" % sys.version_info[:2], "versions": {d: v(d) for d in sys.argv[1:]}}))
"""
_interpreters: dict = {}


def interpreter(python: str, dists: list[str]) -> dict | None:
    """{"python": "3.11", "versions": {dist: version or None}} of an interpreter, or None when it
    cannot be run here (results from another machine)."""
    key = (python, tuple(dists))
    if key not in _interpreters:
        try:
            out = subprocess.run(
                [python, "-c", _QUERY, *dists], capture_output=True, text=True, timeout=60
            )
            _interpreters[key] = json.loads(out.stdout) if out.returncode == 0 else None
        except (OSError, ValueError, subprocess.SubprocessError):
            _interpreters[key] = None
    return _interpreters[key]


def canonical_env(env: dict, python_path: str | None = None) -> dict:
    """The name, python and requirements of an ``existing`` environment as asv would name the
    configured environment holding the same versions. With no runnable interpreter, the pins."""
    from asv.environment import get_env_name

    reqs = dict(env["requirements"])
    python = env["python"]
    info = interpreter(python_path, [k.split("+", 1)[-1] for k in reqs]) if python_path else None
    if info:
        python = info["python"]
        for key in list(reqs):
            found = info["versions"].get(key.split("+", 1)[-1])
            if found is None:
                del reqs[key]  # not installed: not in the name
            elif found.split("+", 1)[0] != reqs[key]:  # 2.13.0+cpu satisfies ==2.13.0
                reqs[key] = found.split("+", 1)[0]
    name = get_env_name(env["tool"], python, reqs, env["tagged_env_vars"])
    return dict(name=name, python=python, requirements=reqs, env_vars=env["env_vars"])


def result_filename(commit: str, env_name: str) -> str:
    """asv.results.get_filename without the machine folder."""
    import hashlib

    if env_name and len(env_name) >= 128:
        env_name = "env-" + hashlib.md5(env_name.encode("utf-8")).hexdigest()
    return f"{commit[:8]}-{env_name}.json"


# ---------------------------------------------------------------------------------------------
# Rows of asv's results format (version 2)


def _isna(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _row(data: dict, name: str) -> dict:
    return dict(itertools.zip_longest(data["result_columns"], data["results"][name]))


def _pack(data: dict, row: dict) -> list:
    """A row dict back into asv's list, trailing Nones dropped as asv drops them."""
    out = [row.get(c) for c in data["result_columns"]]
    while out and out[-1] is None:
        out.pop()
    return out


def _points(params: list) -> list[tuple]:
    return list(itertools.product(*params)) if params else [()]


def _transform_row(row: dict, param_names: list[str] | None, fn) -> dict:
    """Apply a decreasing value transform to every measured point of a row, statistics and
    samples included (an interval's ends and the quartiles swap)."""
    params = row.get("params") or []
    names = param_names or [f"p{i}" for i in range(len(params))]
    points = [{k: ast.literal_eval(v) for k, v in zip(names, combo)} for combo in _points(params)]

    def each(values):
        if values is None:
            return None
        return [v if _isna(v) else fn(v, p) for v, p in zip(values, points)]

    row = dict(row)
    result = row.get("result")
    row["result"] = each(result) if isinstance(result, list) else result
    if row.get("samples"):
        row["samples"] = [
            None if s is None else [fn(x, p) for x in s] for s, p in zip(row["samples"], points)
        ]
    for lo, hi in (("stats_ci_99_a", "stats_ci_99_b"), ("stats_q_25", "stats_q_75")):
        a, b = each(row.get(lo)), each(row.get(hi))
        row[lo], row[hi] = b, a
    return row


def _param_names(name: str, index: dict) -> list[str] | None:
    return (index.get(name) or {}).get("param_names")


# Points of a benchmark in a renamed row are named like the benchmark's parameters; the old
# benchmarks had the same parameters as the new ones.
_OLD_PARAM_NAMES = {
    "bench_bandwidth.Copy.track_copy_GBps_higher_is_better": ["device", "MB"],
    "bench_bandwidth.ScanBandwidth.track_percent_of_copy_higher_is_better": ["backend", "TxN"],
    "bench_bandwidth.ScanBandwidth.track_scan_GBps_higher_is_better": ["backend", "TxN"],
    "bench_cpu.AutoVsBest.track_best_over_auto_higher_is_better": ["T", "N"],
}


def _merge_rows(old: dict, new: dict) -> dict:
    """``new`` (the later measurement) over ``old``: point by point when both measured the same
    version over the same parameters (an unmeasured point of ``new`` keeps ``old``'s), else
    ``new`` whole."""
    if (
        old.get("version") != new.get("version")
        or old.get("params") != new.get("params")
        or not isinstance(old.get("result"), list)
        or not isinstance(new.get("result"), list)
    ):
        return new
    out = dict(new)
    n = len(new["result"])
    for col in (
        "result",
        "stats_ci_99_a",
        "stats_ci_99_b",
        "stats_q_25",
        "stats_q_75",
        "stats_number",
        "stats_repeat",
        "samples",
    ):
        a, b = old.get(col) or [None] * n, new.get(col) or [None] * n
        merged = [b[i] if not _isna(new["result"][i]) else a[i] for i in range(n)]
        out[col] = None if all(v is None for v in merged) else merged
    return out


def merge_results(old: dict, new: dict) -> dict:
    """Two result files of one machine, commit and environment name as one (``new`` wins where
    both hold a benchmark measured later; see ``_merge_rows``)."""
    out = dict(new)
    out["results"] = {}
    columns = new["result_columns"]
    assert old["result_columns"] == columns, "asv result formats differ"
    for name in dict.fromkeys([*old["results"], *new["results"]]):
        if name not in new["results"]:
            out["results"][name] = old["results"][name]
        elif name not in old["results"]:
            out["results"][name] = new["results"][name]
        else:
            a, b = _row(old, name), _row(new, name)
            if (a.get("started_at") or 0) > (b.get("started_at") or 0):
                a, b = b, a
            out["results"][name] = _pack(new, _merge_rows(a, b))
    durations = dict(old.get("durations") or {})
    durations.update(new.get("durations") or {})
    out["durations"] = durations
    out["date"] = max(old.get("date") or 0, new.get("date") or 0)
    return out


def migrate_benchmarks(data: dict, index: dict | None = None) -> list[str]:
    """Renamed benchmarks (``RENAMES``: name and value) and explicit versions (``VERSIONS``) in
    one result file's data, in place; what changed, as lines."""
    index = index or {}
    changes = []
    for old, (new, fn) in RENAMES.items():
        if old not in data["results"]:
            continue
        row = _transform_row(
            _row(data, old), _OLD_PARAM_NAMES.get(old) or _param_names(new, index), fn
        )
        del data["results"][old]
        if new in data["results"]:
            a, b = row, _row(data, new)
            if (a.get("started_at") or 0) > (b.get("started_at") or 0):
                a, b = b, a
            row = _merge_rows(a, b)
        data["results"][new] = _pack(data, row)
        changes.append(f"{old} -> {new}")
    for name, hashes in VERSIONS.items():
        if name in data["results"]:
            row = _row(data, name)
            if row.get("version") in hashes:
                row["version"] = hashes[row["version"]]
                data["results"][name] = _pack(data, row)
                changes.append(f"{name}: version {row['version']}")
    return changes


def _dump(data: dict) -> bytes:
    """asv's compact JSON (asv.util.write_json(compact=True)), ``version`` last as asv puts it."""
    data = dict(data)
    data["version"] = data.pop("version", 2)
    return json.dumps(data).encode()


# Fields of ``asv machine`` that asv copies into every result's params (when they differ from its
# defaults): ``asv publish`` draws one graph per distinct params, so a kernel update ("os") would
# start a new history. machine.json keeps them; the results drop them.
DESCRIPTION = {"os", "arch", "cpu", "num_cpu", "ram"}


def normalise(
    results: Path = RESULTS, machine: str | None = None, config: Path = CONFIG, log=print
) -> list[str]:
    """Rewrite every result file under ``results`` (one machine's folder with ``machine``): an
    ``existing-*`` environment renamed to the configured one's name (see ``canonical_env``),
    benchmarks renamed and versions made explicit (``migrate_benchmarks``), machine descriptions
    out of the params (``DESCRIPTION``), files of one commit and name merged. Idempotent. Returns
    what it did, one line each."""
    results = Path(results)
    env = configured_env(config)
    try:
        index = json.loads((results / "benchmarks.json").read_text())
    except (OSError, ValueError):
        index = {}
    done = []
    folders = [results / machine] if machine else sorted(p for p in results.iterdir() if p.is_dir())
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            if path.name == "machine.json" or not path.exists():
                continue
            raw = path.read_bytes()
            data = json.loads(raw)
            if not isinstance(data, dict) or "results" not in data or "env_name" not in data:
                continue
            changes = migrate_benchmarks(data, index)
            if data["env_name"].startswith("existing-"):
                canon = canonical_env(env, data.get("python"))
                changes.append(f"{data['env_name']} -> {canon['name']}")
                data["env_name"] = canon["name"]
                data["python"] = canon["python"]
                data["requirements"] = canon["requirements"]
                data["env_vars"] = canon["env_vars"]
                params = {
                    k: v
                    for k, v in data["params"].items()
                    if k in ("machine", "python") or not k.startswith(("pip+", "conda+"))
                }
                params.update(python=canon["python"], **canon["requirements"])
                data["params"] = params
            described = sorted(DESCRIPTION & set(data["params"]))
            if described:
                data["params"] = {k: v for k, v in data["params"].items() if k not in DESCRIPTION}
                changes.append(f"params without {', '.join(described)}")
            target = folder / result_filename(data["commit_hash"], data["env_name"])
            if target != path and target.exists():
                data = merge_results(json.loads(target.read_bytes()), data)
                changes.append(f"merged into {target.name}")
            out = _dump(data)
            if target != path or out != raw:
                atomic.write_if_changed(target, out)
                if target != path:
                    path.unlink()
                rel = f"{folder.name}/{path.name}"
                done.append(f"{rel}: " + "; ".join(changes) if changes else rel)
                log(f"normalised {done[-1]}")
    return done


# ---------------------------------------------------------------------------------------------
# The subset, its estimate and progress


def selection(index: dict, regexes: list[str] | None) -> dict:
    """asv's -b selection (asv/benchmarks.py): {benchmark: selected point indices, or None for an
    unparameterised one}; a benchmark none of whose points matches is left out."""
    chosen = {}
    for name, meta in index.items():
        if not isinstance(meta, dict):
            continue
        params = meta.get("params") or []
        if params:
            idx = [
                i
                for i, combo in enumerate(_points(params))
                if not regexes or any(re.search(r, f"{name}({', '.join(combo)})") for r in regexes)
            ]
            if idx:
                chosen[name] = idx
        elif not regexes or any(re.search(r, name) for r in regexes):
            chosen[name] = None
    return chosen


def _quick_row(row: dict) -> bool:
    repeats = [r for r in row.get("stats_repeat") or [] if r is not None]
    return not repeats or max(repeats) <= 1


def reference_durations(results: Path = RESULTS, machine: str | None = None) -> dict:
    """{benchmark: (seconds, measured point indices, machine)} from the newest row of each
    benchmark timed as ``--quick`` times it: this machine's results first, then the reference
    machine's, then any machine's."""
    results = Path(results)
    found: dict = {}
    order = list(dict.fromkeys(m for m in (machine, REFERENCE_MACHINE) if m))
    order += sorted(p.name for p in results.iterdir() if p.is_dir() and p.name not in order)
    for m in order:
        rows: dict = {}
        for path in sorted((results / m).glob("*.json")):
            if path.name == "machine.json":
                continue
            try:
                data = json.loads(path.read_bytes())
                names = list(data["results"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            for name in names:
                row = _row(data, name)
                once = name.split(".")[-1].startswith(("track_", "peakmem_"))  # quick or not
                # a re-timed benchmark's quick row is overwritten: where no quick row of it is
                # left, its 5-sample row counts (an overestimate of the quick pass)
                quick = once or _quick_row(row)
                if row.get("duration") is None or not (quick or _class(name) in RETIMED):
                    continue
                key = (quick, row.get("started_at") or 0)
                if name not in rows or key > rows[name][0]:
                    result = row.get("result")
                    ran = (
                        [i for i, v in enumerate(result) if not _isna(v)]
                        if isinstance(result, list)
                        else []
                    )
                    rows[name] = (key, row["duration"], ran)
        for name, (_, seconds, ran) in rows.items():
            found.setdefault(name, (seconds, ran, m))
    return found


SKIP_SECONDS = 0.01  # a point that is n/a at once (a forked process, setup)


def estimate(index: dict, chosen: dict, reference: dict) -> dict:
    """{benchmark: (seconds or None when never measured, note)} for the chosen points: the
    reference duration scaled by the share of the reference's measured points chosen now."""
    out = {}
    for name, idx in chosen.items():
        if name not in reference:
            out[name] = (None, "no recorded duration")
            continue
        seconds, ran, m = reference[name]
        if idx is None or not ran:
            out[name] = (seconds, m)
            continue
        share = len(set(idx) & set(ran)) / len(ran)
        out[name] = (seconds * share + SKIP_SECONDS * len(set(idx) - set(ran)), m)
    return out


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


UNKNOWN_SECONDS = 30.0  # a benchmark no result file has a duration for


class Progress:
    """Follows asv's output ("[ 45.00%] ··· bench_x.Y.time_z ... ok") and says how much is left:
    the estimates of the benchmarks not finished, scaled by how the finished ones compared with
    their estimates (this machine against the recorded one)."""

    LINE = re.compile(r"^\[\s*[\d.]+%\]\s+[·.-]+\s+(\S+)")

    def __init__(self, estimates: dict, out=sys.stdout, clock=time.monotonic):
        self.est = {k: (v if v is not None else UNKNOWN_SECONDS) for k, (v, _) in estimates.items()}
        self.out, self.clock = out, clock
        self.start = clock()
        self.done: dict = {}  # name -> seconds it took
        self.current: tuple | None = None  # (name, started)
        self.pending = ""  # a partial line of asv's output (already echoed)

    def _name(self, token: str) -> str | None:
        token = token.lstrip(".")
        if token in self.est:
            return token
        hits = [k for k in self.est if k.endswith(token)] if token else []
        return hits[0] if len(hits) == 1 else None

    def factor(self) -> float:
        est = sum(self.est[k] for k in self.done)
        if est < 10:
            return 1.0
        return min(max(sum(self.done.values()) / est, 0.5), 4.0)

    def left(self) -> float:
        f = self.factor()
        running = self.current[0] if self.current else None
        rest = f * sum(v for k, v in self.est.items() if k not in self.done and k != running)
        if running:
            rest += max(f * self.est[running] - (self.clock() - self.current[1]), 0.0)
        return rest

    def status(self) -> str:
        return (
            f"[make bench] {len(self.done)}/{len(self.est)} benchmarks done in "
            f"{_clock(self.clock() - self.start)}; about {_clock(self.left())} left"
        )

    def feed(self, text: str) -> None:
        """asv's output, as it arrives: echoed, with a status line after each finished benchmark."""
        *lines, tail = text.split("\n")
        for line in lines:
            self.out.write(line + "\n")
            self._see(self.pending + line, finished=True)
            self.pending = ""
        self.out.write(tail)
        self.pending += tail
        if self.pending:
            self._see(self.pending, finished=False)
        self.out.flush()

    def _see(self, line: str, finished: bool) -> None:
        m = self.LINE.match(line)
        name = self._name(m.group(1)) if m else None
        if name is None or name in self.done:
            return
        now = self.clock()
        if self.current is None or self.current[0] != name:
            self.current = (name, now)
        if finished:
            self.done[name] = now - self.current[1]
            self.current = None
            self.out.write(self.status() + "\n")

    def heartbeat(self) -> None:
        """A status line while a long benchmark runs (breaking asv's open line if need be)."""
        what = (
            f"; running {self.current[0]} for {_clock(self.clock() - self.current[1])} "
            f"(recorded: {_clock(self.est[self.current[0]])})"
            if self.current
            else ""
        )
        self.out.write(("\n" if self.pending else "") + self.status() + what + "\n")
        self.out.flush()


def run_with_progress(cmd: list[str], progress: Progress, env=None, heartbeat: float = 60.0) -> int:
    """Run ``cmd`` (asv), feeding its merged stdout and stderr to ``progress``; its exit status."""
    import codecs

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    fd = proc.stdout.fileno()
    decode = codecs.getincrementaldecoder("utf-8")("replace").decode
    last = time.monotonic()
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 5.0)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                progress.feed(decode(chunk))
                last = time.monotonic()
            elif time.monotonic() - last >= heartbeat:
                progress.heartbeat()
                last = time.monotonic()
    except KeyboardInterrupt:
        proc.terminate()
        raise
    finally:
        proc.stdout.close()
    return proc.wait()


def _git(*args) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def plan(regexes: list[str] | None, results: Path = RESULTS, machine: str | None = None):
    """(chosen points, estimates, total seconds with asv's fixed costs) of a run."""
    index = json.loads((Path(results) / "benchmarks.json").read_text())
    chosen = selection(index, regexes)
    est = estimate(index, chosen, reference_durations(results, machine))
    total = FIXED_SECONDS + sum(v if v is not None else UNKNOWN_SECONDS for v, _ in est.values())
    # the re-timing with 5 samples a point (bench) runs those benchmarks a second time
    total += FIXED_SECONDS + sum(v or 0 for k, (v, _) in est.items() if _class(k) in RETIMED)
    return index, chosen, est, total


def _class(benchmark: str) -> str:
    return benchmark.rsplit(".", 1)[0]


def describe(index, chosen, est, total) -> str:
    points = sum(len(v) if v is not None else 1 for v in chosen.values())
    every = sum(len(_points(m.get("params") or [])) for m in index.values() if isinstance(m, dict))
    sources = sorted({n for v, n in est.values() if v is not None})
    unknown = [k for k, (v, _) in est.items() if v is None]
    text = (
        f"{len(chosen)} benchmarks, {points} of {every} parameter points; expected "
        f"{_clock(total)} (the durations asv recorded for --quick on {', '.join(sources)}, "
        f"plus {FIXED_SECONDS:.0f} s for discovery; the re-timing of {', '.join(RETIMED)} "
        f"included)"
    )
    if unknown:
        text += f"; {len(unknown)} never recorded, counted {UNKNOWN_SECONDS:.0f} s each"
    return text


GRID = "bench_cpu.CPUGrid.time_scan"
# Benchmark classes timed again with 5 samples a point after the --quick pass.
RETIMED = [
    "bench_regression.Regression",  # the history chart and asv's Regressions page
    "bench_scan.ScanForward",
    "bench_paper.Table1",
    "bench_cpu.CPUGrid",
    "bench_kernels.Ladder",
    "bench_kernels.PipelineHead",
    "bench_kernels.HandOff",
    "bench_peers.Peers",
]


def bench(args) -> int:
    from .machine import name as machine_name

    machine = args.machine or machine_name()
    regexes = None if args.full else (args.bench or DEFAULT_SUBSET)
    index, chosen, est, total = plan(regexes, args.results, machine)
    python = os.path.abspath(args.python or sys.executable)
    head = _git("rev-parse", "HEAD")
    # -a rounds=1: what --quick runs anyway; without it asv 0.6.6 counts the suite's default two
    # rounds in its [ NN%] progress, which then stops at 50 %.
    cmd = [
        os.path.join(os.path.dirname(python), "asv"),
        "run",
        "-E",
        f"existing:{python}",
        "--quick",
        "-a",
        "rounds=1",
        "--launch-method",
        args.launch_method,
        "--set-commit-hash",
        head,
        "--machine",
        machine,
    ]
    for r in regexes or []:
        cmd += ["-b", r]
    if args.no_save:
        cmd.append("--dry-run")
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", COLUMNS="160")
    if not args.full:
        env["LRBENCH_BENCH_SKIP_COMPILE"] = "1"
    print(f"make bench on {machine}: {describe(index, chosen, est, total)}")
    if _git("status", "--porcelain", "--untracked-files=no", "--", "lrbench", "kernels"):
        print(
            "make bench: lrbench/ or kernels/ has uncommitted changes; the results are stamped "
            f"with HEAD ({head[:8]}) but measure the working tree"
        )
    print("make bench: " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    if args.dry_run:
        return 0
    rc = run_with_progress(cmd, Progress(est), env=env)
    index, chosen = plan(regexes, args.results, machine)[:2]  # asv has rediscovered them
    again = [c for c in RETIMED if any(k.startswith(c + ".") for k in chosen)]
    if rc == 0 and again:
        # --quick times a point once, cold: 250-400 us where a call takes 20 us at T = 16, which
        # asv's Regressions page then flags. What the history, the headline chart, Table 1,
        # auto's table, the kernel ladder and the peer table are drawn from is timed again, 5
        # samples a point.
        cmd = [c for c in cmd if c != "--quick"]
        at = cmd.index("-b") if "-b" in cmd else len(cmd)
        cmd = cmd[:at] + ["-a", "repeat=5"]
        for r in retime_regexes(index, regexes, again):
            cmd += ["-b", r]
        cmd += ["--dry-run"] if args.no_save else []
        print(f"make bench: {', '.join(again)} again, 5 samples a point", flush=True)
        rc = subprocess.run(cmd, env=env).returncode
    if not args.no_save:
        normalise(args.results, machine, log=lambda line: print(f"make bench: {line}"))
        if rc == 0 and any(k.startswith("bench_kernels.") for k in chosen):
            print(f"make bench: wrote {save_facts(Path(args.results).parent, machine)}")
    return rc


def retime_regexes(index: dict, regexes: list[str] | None, classes: list[str]) -> list[str]:
    """asv -b regexes for the points of ``classes`` that ``regexes`` chose (all of a class's
    points with --full): each regex narrowed to one class by a lookahead, kept where it selects
    something, so that the re-timing runs no point the first pass did not."""
    out = []
    for c in classes:
        for r in regexes or [""]:
            narrowed = f"(?=^{re.escape(c)}\\.)(?:{r})"
            if selection(index, [narrowed]):
                out.append(narrowed)
    return out


def save_facts(results: Path, machine: str, wait_s: float = 150.0) -> Path:
    """This machine's hardware facts (``lrbench.hwfacts``) beside its results,
    ``results/cpu/facts_<machine>.json``: the report sets the model auto and perfcheck use
    from them against the kernel ladder's measurements. Measured once the 1-minute load average
    left by the benchmarks falls below ``hwfacts.BUSY`` a core (at most ``wait_s`` seconds; the
    file says ``busy`` if it did not)."""
    from . import hwfacts

    deadline = time.monotonic() + wait_s
    while (hwfacts.load_per_core() or 0.0) >= hwfacts.BUSY and time.monotonic() < deadline:
        time.sleep(5)
    doc = hwfacts.facts(machine, remeasure=True)
    path = Path(results) / "cpu" / f"facts_{machine}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, doc, indent=2)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lrbench.asv_results", description=__doc__.split("\n\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    n = sub.add_parser("normalise", help="one environment name per machine in the result files")
    n.add_argument("--results", type=Path, default=RESULTS)
    n.add_argument("--machine", help="only this machine's folder")
    for name, helptext in (
        ("estimate", "the expected time of a make bench run"),
        ("bench", "make bench's asv run, with progress, then normalise"),
    ):
        s = sub.add_parser(name, help=helptext)
        g = s.add_mutually_exclusive_group()
        g.add_argument("--full", action="store_true", help="every benchmark (make bench FULL=1)")
        g.add_argument("-b", "--bench", action="append", help="asv -b regex (repeatable)")
        s.add_argument("--results", type=Path, default=RESULTS)
        s.add_argument("--machine", help="default: lrbench machine")
        if name == "bench":
            s.add_argument("--python", help="the interpreter asv runs in (default: this one)")
            s.add_argument("--launch-method", default="forkserver")
            s.add_argument("--dry-run", action="store_true", help="print the plan and the command")
            s.add_argument(
                "--no-save",
                action="store_true",
                help="run asv with --dry-run: progress shown, no results written",
            )
    args = p.parse_args(argv)
    if args.command == "normalise":
        normalise(args.results, args.machine)
        return 0
    if args.command == "estimate":
        from .machine import name as machine_name

        regexes = None if args.full else (args.bench or DEFAULT_SUBSET)
        index, chosen, est, total = plan(regexes, args.results, args.machine or machine_name())
        for k in sorted(est, key=lambda k: -(est[k][0] or 0)):
            v, src = est[k]
            print(f"{'?' if v is None else f'{v:8.1f}':>8} s  {k}  ({src})")
        print(describe(index, chosen, est, total))
        return 0
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
