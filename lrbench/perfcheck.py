"""``lrbench perfcheck``: the CI performance gate, calibrated per machine.

Every check times the public ``linear_recurrence`` (into a preallocated ``out=``, torch's default
threads: what a user runs) against a reference timed back to back in the same process, so a slow
or busy machine slows both; each is measured several times and the best trial counts.

The thresholds ship in the package (``perf_thresholds.json`` beside this module, so an installed
lrbench runs its own gate), keyed by ``lrbench machine``. A machine without an entry is held to
the file's ``default`` set and says so: there a check's ``min`` may be a fraction (``model``) of
the ratio lrbench's performance model predicts for this machine from its own measured facts
(``lrbench.hwfacts``, the facts ``auto`` derives its rule from; ``predicted``), so that a machine
whose two cores add no memory bandwidth is not held to one whose cores do. ``--calibrate`` measures this machine and
writes its entry into ``--thresholds FILE``: each check's median over its trials and a ``min``
that a 2x regression of the ratio falls below. A failure names the ratio, the threshold, the
machine it was calibrated on, the machine it ran on and the load average. docs/perfcheck.md has
the format, the calibration rule and CI jobs to copy.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from . import atomic
from .api import linear_recurrence
from .machine import _git_commit
from .machine import name as _machine_name
from .options import Failure
from .timing import inputs, median_time

THRESHOLDS = Path(__file__).with_name("perf_thresholds.json")  # package data
DEFAULT = "default"  # the set a machine without its own calibration is held to
TRIALS = 3  # per check in the gate: the best counts (noise mostly lowers a ratio)
CALIBRATION_TRIALS = 5  # per check in --calibrate: the median counts
FRACTION = 0.6  # a calibrated min is this fraction of the median ...
NOISE_ROOM = 0.9  # ... or this fraction of the worst trial, if that is lower,
REGRESSION = 2.0  # ... and must stay above median / REGRESSION, or --calibrate refuses
ABOUT = (
    "lrbench perfcheck thresholds, keyed by `lrbench machine` (format: docs/perfcheck.md). "
    "A machine not under 'machines' is held to 'default' (the package's when absent here)."
)


def _scan_seconds(backend: str, T: int, N: int, reverse: bool = False) -> float:
    a, x = inputs(T, N)
    h = torch.empty_like(x)
    with torch.no_grad():
        return median_time(lambda: linear_recurrence(a, x, backend=backend, reverse=reverse, out=h))


def serial_vs_copy() -> float:
    """cpu-serial bandwidth (12 B per element) over a one-core copy's (np.copyto), T = 2^16,
    N = 256."""
    T, N = 1 << 16, 256
    src = np.ones(6 * T * N // 4, np.float32)  # copied, it moves 12 T N bytes like the scan
    dst = np.empty_like(src)
    return median_time(lambda: np.copyto(dst, src)) / _scan_seconds("cpu-serial", T, N)


def chunked_vs_serial() -> float:
    """cpu-chunked speedup over cpu-serial at N = 1, T = 2^22 (the latency-bound regime)."""
    return _scan_seconds("cpu-serial", 1 << 22, 1) / _scan_seconds("cpu-chunked", 1 << 22, 1)


def pipeline_vs_serial() -> float:
    """cpu-chunked speedup over cpu-serial at N = 8, T = 2^19 (bandwidth-bound: the pipeline)."""
    return _scan_seconds("cpu-serial", 1 << 19, 8) / _scan_seconds("cpu-chunked", 1 << 19, 8)


def reverse_vs_forward() -> float:
    """cpu-serial forward time over reverse time at N = 256, T = 2^16 (1 = no penalty)."""
    return _scan_seconds("cpu-serial", 1 << 16, 256) / _scan_seconds(
        "cpu-serial", 1 << 16, 256, True
    )


CHECKS = {
    "serial_vs_copy": serial_vs_copy,
    "chunked_vs_serial": chunked_vs_serial,
    "pipeline_vs_serial": pipeline_vs_serial,
    "reverse_vs_forward": reverse_vs_forward,
}
WHAT = {name: " ".join(check.__doc__.split()) for name, check in CHECKS.items()}  # what each is


# --- where the run happens ----------------------------------------------------------------------


def this_machine() -> str:
    """``lrbench machine``: the key of this machine's thresholds."""
    return _machine_name()


def load_average() -> float | None:
    """The 1-minute load average, or None where the system keeps none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def cores() -> int | None:
    """This machine's core count (what the load average is compared with)."""
    return os.cpu_count()


def stamp() -> dict:
    """The commit (lrbench.machine's stamp: "unknown" outside a checkout) and the UTC date."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"commit": _git_commit(), "date": now}


def _busy(load: float | None, n: int | None) -> bool:
    """Whether the load average exceeded the ``n`` cores (the ratios may then reflect load)."""
    return load is not None and n is not None and load > n


# --- the threshold file -------------------------------------------------------------------------


def _positive(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def predicted(check: str, facts: dict, threads: int) -> float:
    """The ratio ``check`` should give on a machine with these ``hwfacts`` (auto_rule's model):
    cpu-chunked over cpu-serial at the check's shape; 1 for serial_vs_copy (cpu-serial streams
    at one core's copy bandwidth) and reverse_vs_forward (no penalty reversed)."""
    from . import auto_rule

    if check == "chunked_vs_serial":
        return auto_rule.speedup(facts, 1 << 22, 1, threads)
    if check == "pipeline_vs_serial":
        return auto_rule.speedup(facts, 1 << 19, 8, threads)
    return 1.0


def resolve(checks: dict, facts=None) -> dict:
    """``checks`` with a ``min`` for every check: a ``model`` entry gets ``model`` times the
    ratio ``predicted`` from this machine's facts (measured, or read from their cache, on first
    use), and ``predicted`` beside it."""
    if not any("model" in want for want in checks.values()):
        return checks
    if facts is None:
        from . import hwfacts

        facts = hwfacts.facts(this_machine())["facts"]
    threads = torch.get_num_threads()
    out = {}
    for check, want in checks.items():
        if "model" in want:
            expect = predicted(check, facts, threads)
            want = {**want, "min": _sig3(want["model"] * expect, down=True), "predicted": expect}
        out[check] = want
    return out


def _validate_set(checks, where: str, key: str) -> None:
    """One machine's (or the default) ``checks``: known names, a positive ``min`` or a ``model``
    fraction in (0, 1] each."""
    if not isinstance(checks, dict) or not checks:
        raise Failure(f'{where}: {key}: expected a non-empty "checks" object, got {checks!r}')
    for check, want in checks.items():
        if check not in CHECKS:
            raise Failure(f"{where}: {key}: unknown check {check!r}; known: {', '.join(CHECKS)}")
        if not isinstance(want, dict):
            raise Failure(f'{where}: {key}.{check}: expected an object with "min", got {want!r}')
        if "model" in want:
            if key != DEFAULT or "min" in want:
                raise Failure(
                    f"{where}: {key}.{check}: a 'model' fraction belongs in the default set "
                    f"only, and never beside a 'min'"
                )
            if not (_positive(want["model"]) and want["model"] <= 1):
                raise Failure(
                    f"{where}: {key}.{check}.model: expected a fraction in (0, 1], "
                    f"got {want['model']!r}"
                )
            continue
        for field in ("min", "measured"):
            value = want.get(field)
            if (field == "min" or value is not None) and not _positive(value):
                raise Failure(
                    f"{where}: {key}.{check}.{field}: expected a positive number, got {value!r}"
                )


def _validate(spec, where: str) -> None:
    """A ``Failure`` naming the file and the first thing wrong in it."""
    if not isinstance(spec, dict) or not isinstance(spec.get("machines"), dict):
        raise Failure(
            f'{where}: expected an object with a "machines" object (the format: docs/perfcheck.md)'
        )
    sets = {f"machines.{m}": s for m, s in spec["machines"].items()}
    if DEFAULT in spec:
        sets[DEFAULT] = spec[DEFAULT]
    for key, entry in sets.items():
        _validate_set(entry.get("checks") if isinstance(entry, dict) else entry, where, key)


def load(path=None) -> dict:
    """The thresholds in ``path`` (the package's own file when None), checked; a one-line
    ``Failure`` naming the file and what was wrong otherwise."""
    path = THRESHOLDS if path is None else Path(path)
    where = f"--thresholds {path}" if path != THRESHOLDS else f"package thresholds {path}"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise Failure(f"{where}: no such file") from None
    except OSError as e:
        raise Failure(f"{where}: cannot read it ({e.strerror or e})") from None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise Failure(f"{where}: not JSON (line {e.lineno} column {e.colno}: {e.msg})") from None
    _validate(spec, where)
    return spec


def thresholds_for(spec: dict, machine: str) -> tuple[dict, str | None]:
    """``machine``'s checks and the machine they were calibrated on; for a machine without an
    entry, the default set (the file's, else the package's) and None."""
    if machine in spec["machines"]:
        return spec["machines"][machine]["checks"], machine
    default = spec.get(DEFAULT) or load()[DEFAULT]
    return default["checks"], None


def weak_checks(checks: dict) -> list[str]:
    """The calibrated checks whose ``min`` a ratio REGRESSION times below ``measured`` still
    passes (a threshold set by hand, or before the code got faster)."""
    return [
        c
        for c, want in checks.items()
        if want.get("measured") is not None and not want["min"] > want["measured"] / REGRESSION
    ]


def _writable(path: Path, option: str) -> Path:
    """Check before any timing that ``path`` can be written (its folder created if needed)."""
    if path.is_dir():
        raise Failure(f"{option} {path}: is a folder, expected a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise Failure(f"{option} {path}: cannot write there ({e.strerror or e})") from None
    return path


# --- measuring ----------------------------------------------------------------------------------


def measure(check: str, trials: int) -> list[float]:
    """``trials`` values of one check's ratio."""
    return [float(CHECKS[check]()) for _ in range(trials)]


def _row(
    check: str,
    measured: float,
    values: list[float],
    minimum: float,
    machine: str,
    calibrated_on: str | None,
    commit: str,
    calibrated_ratio=None,
    predicted_ratio=None,
) -> dict:
    """One check's result, as printed and as --json writes it."""
    load, n = load_average(), cores()
    return dict(
        check=check,
        measured=measured,
        trials=values,
        min=minimum,
        calibrated_ratio=calibrated_ratio,
        predicted_ratio=predicted_ratio,
        machine=machine,
        calibrated_on=calibrated_on,
        load=load,
        cores=n,
        busy=_busy(load, n),
        passed=measured >= minimum,
        commit=commit,
        what=WHAT[check],
    )


def gate_rows(checks: dict, machine: str, calibrated_on: str | None, trials: int):
    """Each check of ``checks``, best of ``trials``, against its ``min``: one row at a time."""
    commit = stamp()["commit"]
    for check, want in resolve(checks).items():
        values = measure(check, trials)
        yield _row(
            check,
            max(values),
            values,
            want["min"],
            machine,
            calibrated_on,
            commit,
            calibrated_ratio=want.get("measured"),
            predicted_ratio=want.get("predicted"),
        )


def run(thresholds=None, trials: int = TRIALS) -> tuple[bool, list[dict]]:
    """The gate on this machine's thresholds (the default set for a machine without any)."""
    machine = this_machine()
    checks, calibrated_on = thresholds_for(load(thresholds), machine)
    rows = list(gate_rows(checks, machine, calibrated_on, trials))
    return all(r["passed"] for r in rows), rows


# --- calibrating --------------------------------------------------------------------------------


def _sig3(x: float, down: bool = False) -> float:
    """``x`` to three significant figures (rounded down when ``down``)."""
    digits = 2 - math.floor(math.log10(abs(x))) if x else 0
    scaled = x * 10**digits
    return round((math.floor(scaled + 1e-9) if down else round(scaled)) / 10**digits, digits)


def threshold_for(check: str, values: list[float]) -> dict:
    """A check's calibrated entry from its trials: ``measured`` the median, ``min`` FRACTION of
    it or NOISE_ROOM of the worst trial, whichever is lower; refused (``Failure``) when the
    trials scatter so far that a threshold they pass would pass a REGRESSION too."""
    median, worst = statistics.median(values), min(values)
    minimum = _sig3(min(FRACTION * median, NOISE_ROOM * worst), down=True)
    if not minimum > median / REGRESSION:
        why = (
            f"the worst trial is {worst / median:.0%} of the median"
            if NOISE_ROOM * worst < FRACTION * median
            else f"FRACTION {FRACTION} is not above 1/{REGRESSION:g}"
        )
        raise Failure(
            f"--calibrate: {check}: trials {', '.join(f'{v:.3g}' for v in values)} "
            f"(median {median:.3g}): {why}, so a threshold they pass ({minimum:.3g}) "
            f"would pass a {REGRESSION:g}x regression ({median / REGRESSION:.3g}) too; "
            f"calibrate on a quieter machine or with more --trials"
        )
    return {"min": minimum, "measured": _sig3(median), "trials": [_sig3(v) for v in values]}


def check_calibration(machine: str, checks: dict) -> None:
    """The assertion every written entry passes: each ``min`` above ``measured / REGRESSION``,
    so that a REGRESSION-times-lower ratio fails the gate."""
    weak = weak_checks(checks)
    if weak:
        want = checks[weak[0]]
        raise Failure(
            f"--calibrate: {machine} {weak[0]}: min {want['min']:.3g} is not above "
            f"measured / {REGRESSION:g} = {want['measured'] / REGRESSION:.3g}: a "
            f"{REGRESSION:g}x regression would pass; nothing written"
        )


def calibrate(path: Path, trials: int = CALIBRATION_TRIALS) -> list[dict]:
    """Measure every check ``trials`` times and write this machine's entry into ``path``
    (atomically; other machines' entries kept). Returns the rows, as the gate's."""
    path = Path(path)
    spec = load(path) if path.exists() else {"about": ABOUT, "machines": {}}
    _writable(path, "--thresholds")
    machine, when = this_machine(), stamp()
    checks, rows = {}, []
    for check in CHECKS:
        values = measure(check, trials)
        entry = threshold_for(check, values)
        row = _row(
            check,
            statistics.median(values),
            values,
            entry["min"],
            machine,
            machine,
            when["commit"],
            calibrated_ratio=entry["measured"],
        )
        checks[check] = {**entry, "calibrated_at": when, "load": row["load"]}
        rows.append(row)
    check_calibration(machine, checks)
    spec["machines"][machine] = {
        "about": f"lrbench perfcheck --calibrate, {trials} trials, {cores()} cores",
        "checks": checks,
    }
    atomic.write_json(path, spec, indent=2)
    return rows


# --- the command --------------------------------------------------------------------------------


def _load_text(load: float | None, n: int | None) -> str:
    return f"load average {'unknown' if load is None else f'{load:.2f}'} on {n} cores"


def describe(row: dict) -> str:
    """One line per check: ok with its numbers, or FAIL naming the ratio, the threshold, the
    machine calibrated on, the machine run on and the load average."""
    load = _load_text(row["load"], row["cores"])
    if row["passed"]:
        trials = " ".join(f"{v:.3g}" for v in row["trials"])
        calibrated = (
            f"calibrated {row['calibrated_ratio']:.3g}; "
            if row["calibrated_ratio"] is not None
            else f"predicted {row['predicted_ratio']:.3g}; "
            if row.get("predicted_ratio") is not None
            else ""
        )
        return (
            f"ok   {row['check']:18s} {row['measured']:6.3g} >= {row['min']:.3g}  "
            f"({calibrated}trials {trials}; {load})  {row['what']}"
        )
    on = row["calibrated_on"] or (
        f"none: default, {row['predicted_ratio']:.3g} predicted from this machine's facts"
        if row.get("predicted_ratio") is not None
        else "none (defaults)"
    )
    load += ": may reflect load" if row["busy"] else ""
    return (
        f"FAIL {row['check']}: ratio {row['measured']:.3g} below threshold {row['min']:.3g} "
        f"(calibrated on {on}, ran on {row['machine']}; {load})  {row['what']}"
    )


def _header(machine: str, calibrated_on: str | None, where: str, trials: int) -> str:
    if calibrated_on is None:
        return (
            f"perfcheck on {machine}: no calibration for {machine} in {where}: held to the "
            f"default thresholds (a fraction of what lrbench's model predicts from this "
            f"machine's measured facts, lrbench.hwfacts); calibrating this machine "
            f"(lrbench perfcheck --calibrate --thresholds FILE, docs/perfcheck.md) holds it "
            f"to its own numbers. Best of {trials} trials."
        )
    return (
        f"perfcheck on {machine}: thresholds calibrated on {calibrated_on} ({where}); "
        f"best of {trials} trials."
    )


def _summary(rows: list[dict]) -> list[str]:
    failed = [r for r in rows if not r["passed"]]
    if not failed:
        return ["performance gate: passed"]
    lines = [f"performance gate: FAILED: {len(failed)} of {len(rows)} ratios below threshold"]
    busy = [r for r in failed if r["busy"]]
    if busy:
        lines.append(
            f"the load average was above the {busy[0]['cores']} cores during {len(busy)} "
            f"of them: the result may reflect load; rerun on a quiet machine"
        )
    return lines


def _write_json(path: Path, mode: str, thresholds: Path, trials: int, rows: list[dict]) -> None:
    """Every row, with the run's verdict, machine and thresholds, written atomically."""
    atomic.write_json(
        path,
        {
            "mode": mode,
            "passed": all(r["passed"] for r in rows),
            "thresholds": str(thresholds),
            "trials": trials,
            "machine": rows[0]["machine"],
            "calibrated_on": rows[0]["calibrated_on"],
            "commit": rows[0]["commit"],
            "rows": rows,
        },
        indent=2,
    )


def _gate(thresholds, trials: int) -> list[dict]:
    """Run the gate, printing a line per check as it is measured, then notes and the verdict."""
    machine = this_machine()
    checks, calibrated_on = thresholds_for(load(thresholds), machine)
    where = THRESHOLDS if thresholds is None else Path(thresholds)
    print(_header(machine, calibrated_on, where, trials), flush=True)
    rows = []
    for row in gate_rows(checks, machine, calibrated_on, trials):
        print(describe(row), flush=True)
        rows.append(row)
    for check in weak_checks(checks):
        want = checks[check]
        print(
            f"note: {check}'s threshold {want['min']:.3g} is not above its calibrated "
            f"{want['measured']:.3g} / {REGRESSION:g}: a {REGRESSION:g}x regression would pass "
            f"it; recalibrate this machine (docs/perfcheck.md)"
        )
    for line in _summary(rows):
        print(line)
    return rows


def _calibrate(thresholds: Path, trials: int) -> list[dict]:
    """Calibrate, then print each check's median, new threshold and trials."""
    rows = calibrate(thresholds, trials)
    print(
        f"perfcheck --calibrate on {rows[0]['machine']}: median of {trials} trials; wrote its "
        f"entry into {thresholds}"
    )
    for r in rows:
        print(
            f"{r['check']:18s} measured {r['calibrated_ratio']:.3g}  min {r['min']:.3g}  trials "
            f"{' '.join(f'{v:.3g}' for v in r['trials'])}  ({_load_text(r['load'], r['cores'])})"
        )
    if any(r["busy"] for r in rows):
        print(
            "warning: the load average was above the core count while calibrating: the "
            "thresholds may be too low; calibrate on a quiet machine"
        )
    return rows


def main(
    json_path=None, thresholds=None, trials: int | None = None, calibrate: bool = False
) -> int:
    """``lrbench perfcheck``: 0 when every ratio is at or above its threshold (or the
    calibration was written), 1 otherwise. Paths are checked before anything is timed."""
    json_path = _writable(Path(json_path), "--json") if json_path is not None else None
    if calibrate:
        if thresholds is None:
            raise Failure(
                "--calibrate: needs --thresholds FILE, the file to write this machine's "
                "entry into (in a checkout, lrbench/perf_thresholds.json is the shipped "
                "one)"
            )
        rows = _calibrate(Path(thresholds), trials or CALIBRATION_TRIALS)
    else:
        rows = _gate(thresholds, trials or TRIALS)
    if json_path is not None:
        _write_json(
            json_path,
            "calibrate" if calibrate else "gate",
            thresholds if thresholds is not None else THRESHOLDS,
            trials or (CALIBRATION_TRIALS if calibrate else TRIALS),
            rows,
        )
        print(f"wrote {json_path}")
    return 0 if all(r["passed"] for r in rows) else 1
