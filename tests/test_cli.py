"""The lrbench command: Python's conventions, validation at the edge, and a fuzz test over every
option of every sub-command; and the timing helper."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lrbench import __version__, cli, options, timing
from lrbench.options import Failure, Number

ROOT = Path(__file__).resolve().parent.parent


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse: --help, --version, bad arguments
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def _commands() -> dict[str, argparse.ArgumentParser]:
    return cli.commands(cli.build_parser())


def test_backends_and_info(capsys):
    assert cli.main(["backends"]) == 0
    assert "cpu-chunked" in capsys.readouterr().out
    assert cli.main(["info"]) == 0
    stamp = json.loads(capsys.readouterr().out)
    assert {"cpu", "torch", "numba", "commit", "gpu"} <= set(stamp)


def test_python_m_lrbench_and_version(capsys):
    version = subprocess.run(
        [sys.executable, "-m", "lrbench", "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert (version.returncode, version.stdout) == (0, f"lrbench {__version__}\n")
    rc, _, err = _run([], capsys)
    assert rc == 2 and err.startswith("usage: lrbench ")
    assert err.splitlines()[-1] == "lrbench: error: the following arguments are required: COMMAND"


def test_every_option_has_help_with_its_range_and_default():
    for name, parser in _commands().items():
        text = parser.format_help()
        assert text.startswith(f"usage: lrbench {name} "), name
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            assert action.help, f"lrbench {name} {action.option_strings}: no help text"
            shown = parser._get_formatter()._get_help_string(action)
            if isinstance(action.type, Number):
                assert action.type.describe() in shown, (name, action.dest)
            if action.default not in (None, False, argparse.SUPPRESS):
                assert "(default: " in shown, (name, action.dest)


def test_each_command_reports_bad_arguments_with_its_own_usage(capsys):
    for name in _commands():
        rc, out, err = _run([name, "--no-such-option"], capsys)
        assert rc == 2 and out == "", name
        assert err.startswith(f"usage: lrbench {name} "), err
        assert (
            err.splitlines()[-1]
            == f"lrbench {name}: error: unrecognized arguments: --no-such-option"
        )
    rc, _, err = _run(["reproduce-2b", "--models", "nope"], capsys)
    assert (
        rc == 2
        and err.startswith("usage: lrbench reproduce-2b ")
        and "invalid choice: 'nope'" in err
    )


def test_runtime_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    rc, out, err = _run(["train", "--resume", "--out", str(tmp_path)], capsys)
    assert (
        rc == 1
        and err
        == f"lrbench train: error: --resume: no checkpoint in {tmp_path} (no run there to continue)\n"
    )
    with pytest.raises(Failure, match="no checkpoint"):
        cli.main(["--debug", "train", "--resume", "--out", str(tmp_path)])
    with pytest.raises(Failure, match="no checkpoint"):
        cli.main(["train", "--resume", "--out", str(tmp_path), "--debug"])


def test_an_unexpected_error_names_its_type_and_points_to_debug(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_machine", lambda args: {}["missing"])
    rc, _, err = _run(["machine"], capsys)
    assert rc == 1 and err == (
        "lrbench machine: error: KeyError: 'missing' (run with --debug for the traceback)\n"
    )


def test_an_interrupt_exits_130_in_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_machine", interrupted)
    assert _run(["machine"], capsys)[::2] == (130, "lrbench machine: interrupted\n")


@pytest.mark.parametrize("text, value", [("1", 1), ("7", 7)])
def test_number_accepts_its_range(text, value):
    assert options.POSITIVE_INT(text) == value and options.POSITIVE(text) == float(value)


def test_number_rejects_what_it_says(capsys):
    for t in (options.POSITIVE_INT, options.NONNEGATIVE_INT, options.POSITIVE, options.FINITE):
        for bad in t.bad_values():
            with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(bad))):
                t(bad)


# --- the fuzz test -----------------------------------------------------------------------------

# Cheap settings, so that a bad value the checks let through would finish quickly (and fail the
# test by exiting 0) rather than train for minutes; OUT is the folder whose files must survive.
BASE = {
    "train": [
        "--out",
        "{out}",
        "--T",
        "4",
        "--hidden",
        "2",
        "--layers",
        "1",
        "--batch",
        "2",
        "--max-steps",
        "2",
        "--quiet",
        "--scan-backend",
        "torch-loop",
    ],
    "reproduce-2b": [
        "--runs",
        "{out}/runs",
        "--results",
        "{out}",
        "--models",
        "gilr",
        "--seeds",
        "0",
        "--T",
        "4",
        "--hidden",
        "2",
        "--layers",
        "1",
        "--max-steps",
        "2",
    ],
    "seed000": ["--out", "{out}"],
    "report": ["--results", "{out}"],
}
# Values no type or choice list can reject: paths (missing, or where nothing can be written).
PATHS = {"--out", "--results", "--runs", "--json", "--thresholds"}


def _bad_values(action, blocker: Path) -> list[str]:
    """What the fuzz test gives ``action``: every kind of bad value that applies to it."""
    if action.nargs == 0:
        return ["=yes"]  # a flag given a value
    bad = []
    if isinstance(action.type, Number):
        bad += action.type.bad_values()
    if action.choices:
        bad += ["nope", ""]
    if action.type is options.device:
        bad += ["nope", "cuda:99", "mps"]
    if action.type is options.cuda_arch:
        bad += ["90", "sm_"]
    if action.option_strings[0] in PATHS:
        bad += [str(blocker / "sub"), "/proc/lrbench-cannot-be-here"]
    return bad


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_fuzz_every_option_of_every_command(tmp_path, capsys):
    """Each option of each sub-command given each kind of bad value (wrong type, out of range,
    unknown choice, a flag given a value, a missing or unwritable folder) ends with a one-line
    error naming the option and a non-zero status, and every file in the output folder survives."""
    out = tmp_path / "out"
    assert cli.main(["train", *BASE["train"][2:], "--out", str(out)]) == 0  # a run to keep
    (out / "runs").mkdir()
    for name in ("runs_quick.csv", "table3_T4.csv"):
        (out / name).write_text("precious\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    before = _snapshot(out)
    capsys.readouterr()
    tried = 0
    for name, parser in _commands().items():
        base = [a.format(out=out) for a in BASE.get(name, [])]
        for action in parser._actions:
            if (
                isinstance(action, (argparse._HelpAction, argparse._VersionAction))
                or action.dest == "debug"
            ):
                continue
            flag = action.option_strings[0]
            bad_values = _bad_values(action, blocker)
            assert bad_values, f"lrbench {name} {flag}: the fuzz test knows no bad value for it"
            for bad in bad_values:
                argv = (
                    [name, *base, flag + bad] if bad.startswith("=") else [name, *base, flag, bad]
                )
                rc, _, err = _run(argv, capsys)
                last = err.splitlines()[-1] if err else ""
                assert rc != 0 and last.startswith(f"lrbench {name}: error: "), (argv, rc, err)
                assert "Traceback" not in err and flag in last, (argv, err)
                if flag not in PATHS:  # rejected by argparse, before any work
                    assert rc == 2 and err.startswith(f"usage: lrbench {name}"), (argv, err)
                assert _snapshot(out) == before, argv
                tried += 1
    assert tried > 80


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--out", "{out}"], "already holds a run"),
        (
            ["train", "--out", "{out}", "--resume", "--hidden", "3", "--T", "5"],
            "is a run with --T 4 --hidden 2, not --T 5 --hidden 3",
        ),
        (
            ["train", "--out", "{out}", "--resume", "--scan-backend", "cuda-scan"],
            "--scan-backend cuda-scan: unavailable",
        ),
        (
            ["train", "--out", "{out}/checkpoint.pt"],
            "--out {out}/checkpoint.pt: cannot write there",
        ),
        (["report", "--results", "{out}/metrics.jsonl"], "no such folder"),
        (["report", "--results", "{out}"], "no usable results"),
    ],
)
def test_runtime_refusals_leave_the_folder_intact(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert cli.main(["train", *BASE["train"][2:], "--out", str(out)]) == 0
    before = _snapshot(out)
    capsys.readouterr()
    argv = [a.format(out=out) for a in argv]
    if argv[0] == "train":
        argv[1:1] = BASE["train"][2:]
    rc, _, err = _run(argv, capsys)
    assert rc == 1 and message.format(out=out) in err.splitlines()[-1], err
    assert _snapshot(out) == before


def test_docs_show_each_commands_help(monkeypatch, capsys):
    """docs/cli.md holds the current `--help` of `lrbench` and of each command."""
    monkeypatch.setenv("COLUMNS", "100")
    readme = (ROOT / "docs" / "cli.md").read_text()
    for argv in ([], *([name] for name in _commands())):
        rc, out, _ = _run([*argv, "--help"], capsys)
        assert rc == 0
        assert f"$ lrbench {' '.join(argv)} --help\n".replace("  ", " ") + out in readme, (
            f"docs/cli.md: update the help of `lrbench {' '.join(argv)}` (see tests/test_cli.py)"
        )


def test_median_time_warms_up_and_repeats():
    calls = []
    t = timing.median_time(lambda: calls.append(1), min_reps=5, min_seconds=0.0)
    assert len(calls) == 6 and t >= 0.0
