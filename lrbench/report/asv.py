"""asv's result files read into one table: a row per measured point (machine, commit, date,
benchmark, parameters, value, quartiles, and the environment's torch version: ``make peers`` runs
the peers in a second environment, whose rows are kept apart). A file that cannot be read, or is
JSON of the wrong shape, is reported in one line and skipped."""

from __future__ import annotations

import ast
import itertools
import json
import math
import re
from pathlib import Path

import pandas as pd


def _value(v):
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return v


class _Shape(ValueError):
    """A results file that is valid JSON of the wrong shape."""


def _want(ok: bool, what: str) -> None:
    if not ok:
        raise _Shape(what)


def _number(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _index(path: Path) -> dict:
    """asv's benchmark index: name -> {version, unit, param_names, params}."""
    index = json.loads(path.read_text())
    _want(isinstance(index, dict), f"a {type(index).__name__}, not an object")
    index = {k: m for k, m in index.items() if k != "version"}  # asv's format version
    _want(all(isinstance(m, dict) for m in index.values()), "not an object of benchmark objects")
    return index


def _file_rows(path: Path, benchmarks: dict, stale: set) -> list[dict]:
    """The measured points of one asv result file; names of stale benchmarks go into ``stale``."""
    data = json.loads(path.read_text())
    _want(isinstance(data, dict), f"a {type(data).__name__}, not an object")
    columns, results = data.get("result_columns"), data.get("results")
    commit, date = data.get("commit_hash"), data.get("date")
    torch = re.search(r"pip\+torch([0-9][^-]*)", str(data.get("env_name", "")))
    _want(
        isinstance(columns, list) and all(isinstance(c, str) for c in columns),
        "result_columns is not a list of names",
    )
    _want(isinstance(results, dict), "results is not an object")
    _want(isinstance(commit, str), "commit_hash is not a string")
    _want(
        isinstance(date, (int, float)) and not isinstance(date, bool),
        f"date is {date!r}, not a number of milliseconds",
    )
    rows = []
    for name, raw in results.items():
        _want(isinstance(raw, list), f"the row of {name} is not a list")
        row = dict(zip(columns, raw))
        meta = benchmarks.get(name)
        if meta is None or meta.get("version") != row.get("version"):
            stale.add(name)
            continue
        values, params = row.get("result") or [], row.get("params") or []
        none = [None] * len(values) if isinstance(values, list) else None
        repeats = row.get("stats_repeat") or none
        q25, q75 = row.get("stats_q_25") or none, row.get("stats_q_75") or none
        _want(
            isinstance(values, list)
            and isinstance(params, list)
            and all(isinstance(p, list) for p in params)
            and all(isinstance(v, list) for v in (repeats, q25, q75)),
            f"the result or params of {name} are not lists",
        )
        for combo, value, repeat, lo, hi in zip(
            itertools.product(*params), values, repeats, q25, q75
        ):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            _want(
                isinstance(value, (int, float)) and not isinstance(value, bool),
                f"{name} holds {value!r} where a number belongs",
            )
            rec = dict(
                machine=path.parent.name,
                commit=commit[:8],
                date=date,
                benchmark=name,
                value=float(value),
                unit=meta.get("unit", ""),
                samples=repeat,
                q25=_number(lo),
                q75=_number(hi),
                # make peers' second environment: kept apart for the peers only
                torch=torch.group(1) if torch and name.startswith("bench_peers.") else None,
            )
            rec.update({k: _value(v) for k, v in zip(meta.get("param_names", []), combo)})
            rows.append(rec)
    return rows


def load(results: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per measured point: machine, commit, date, benchmark, params..., value, unit. A file
    that cannot be read, or is JSON of the wrong shape, is one line in the problems, and skipped."""
    problems: list[str] = []
    index = results / "benchmarks.json"
    try:
        benchmarks = _index(index)
    except (OSError, ValueError) as e:
        return pd.DataFrame(), [
            f"{index}: cannot read the benchmark index ({e}); run the suite first"
        ]
    rows = []
    for path in sorted(results.glob("*/*.json")):
        if path.name == "machine.json":
            continue
        stale: set = set()
        try:
            rows += _file_rows(path, benchmarks, stale)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            problems.append(f"{path}: corrupt result file, skipped ({type(e).__name__}: {e})")
            continue
        if stale:
            problems.append(
                f"{path}: {len(stale)} stale benchmark(s) (code changed since; re-run "
                f"them), skipped: {', '.join(sorted(stale)[:3])}"
                f"{' ...' if len(stale) > 3 else ''}"
            )
    return pd.DataFrame(rows), problems


def newest(df: pd.DataFrame) -> pd.DataFrame:
    """The newest result per machine and point (every commit's rows stay in ``df`` for history)."""
    if df.empty:
        return df
    keys = [
        c
        for c in df.columns
        if c not in ("commit", "date", "value", "unit", "samples", "q25", "q75")
    ]
    return df.sort_values("date").groupby(keys, dropna=False, as_index=False).last()
