"""The ``lrbench`` command: report, perfcheck, train, reproduce-2b, seed000, seqpar-bench, backends,
kernels, machine, info.

Conventions (those of Python's own tools): ``--help`` on the command and on each sub-command,
``--version``; a bad argument ends in one line and the sub-command's usage, exit status 2
(argparse); a run-time error in one line naming the file or value, exit status 1; an interrupt,
exit status 130. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from . import __version__
from .options import Failure, HelpFormatter, cuda_arch


def _backends(args):
    from . import backends

    for row in backends():
        mark = "yes" if row["available"] else f"no ({row['reason']})"
        print(f"{row['name']:12s} {mark:40s} {row['summary']}")


def _kernels(args):
    from . import kernels

    print(
        f"{'function':22s} {'arch':6s} {'regs':>4s} {'stack':>5s} {'spill st':>8s} "
        f"{'spill ld':>8s} {'smem':>5s}"
    )
    for path in kernels.sources():
        for arch in args.arch or kernels.ARCHS:
            for r in kernels.compile_report(path, arch)[0]:
                print(
                    f"{r.function:22s} {r.arch:6s} {r.registers:4d} {r.stack_bytes:5d} "
                    f"{r.spill_stores:8d} {r.spill_loads:8d} {r.smem_bytes:5d}"
                )


def _report(args):
    from .report import NoResults, run

    try:
        written, problems = run(args.results)
    except NoResults as e:
        for p in e.problems:
            print(f"warning: {p}", file=sys.stderr)
        raise
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    for w in written:
        print(f"wrote {w}")
    if not written:
        print("nothing changed")


def _perfcheck(args):
    from .perfcheck import main as perfcheck

    return perfcheck(
        json_path=args.json,
        thresholds=args.thresholds,
        trials=args.trials,
        calibrate=args.calibrate,
    )


def _train(args):
    from . import atomic
    from .train import train

    summary = train(args)
    print(atomic.dumps({k: summary[k] for k in ("model", "T", "steps", "seconds", "converged")}))


def _reproduce(args):
    from .reproduce import run as reproduce

    print(reproduce(args).to_string())


def _seed000(args):
    from experiments.seed000.experiment import run

    return run(args)


def _auto_table(args):
    from .auto_table import run

    run(args)


def _seqpar_bench(args):
    from experiments.seqpar import main as seqpar_bench

    return seqpar_bench(args)


def _machine(args):
    from .machine import name

    print(name())


def _info(args):
    from . import atomic
    from .machine import info

    print(atomic.dumps(info(), indent=2))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``only`` names the one sub-command whose options are needed (None: all), so
    ``lrbench --help`` and a light command do not import torch."""
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="on an error, show the full traceback",
    )
    p = argparse.ArgumentParser(
        prog="lrbench",
        formatter_class=HelpFormatter,
        parents=[debug],
        description="Benchmarks and a reproducibility harness for parallel linear "
        "recurrences (Martin & Cundy, ICLR 2018).",
        epilog="`lrbench COMMAND --help` shows a command's options.",
    )
    p.add_argument("--version", action="version", version=f"lrbench {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    choices: dict[str, argparse.ArgumentParser] = {}

    def command(name, help, run):
        c = sub.add_parser(
            name,
            help=help,
            description=help[0].upper() + help[1:] + ".",
            formatter_class=HelpFormatter,
            parents=[debug],
        )
        c.set_defaults(run=run)
        choices[name] = c
        return c

    command("backends", "list the backends and whether each is available here", _backends)
    k = command(
        "kernels",
        "compile lrbench/scan/cuda/*.cu with NVRTC and print ptxas's register and spill report",
        _kernels,
    )
    k.add_argument(
        "--arch",
        action="append",
        type=cuda_arch,
        help="GPU architecture, repeatable; sm_80 and sm_90 when left out",
    )
    r = command(
        "report",
        "regenerate charts and tables from RESULTS/asv (only changed files are written)",
        _report,
    )
    r.add_argument(
        "--results", default="results", help="the results folder (holding asv/ and paper/)"
    )
    from .options import POSITIVE_INT

    pc = command(
        "perfcheck",
        "CI performance gate: same-process time ratios against this machine's thresholds",
        _perfcheck,
    )
    pc.add_argument(
        "--json",
        metavar="FILE",
        help="also write every check's row (trials, "
        "threshold, machines, load, commit) to FILE, atomically",
    )
    pc.add_argument(
        "--thresholds",
        metavar="FILE",
        help="the threshold file; the one shipped in "
        "the package when left out (--calibrate needs it)",
    )
    pc.add_argument(
        "--trials",
        type=POSITIVE_INT,
        metavar="N",
        help="trials per check: the best "
        "counts in the gate (3 when left out), the median in --calibrate (5)",
    )
    pc.add_argument(
        "--calibrate",
        action="store_true",
        help="measure this machine and write its "
        "entry (min, measured, calibrated_at per check) into --thresholds FILE",
    )
    command("machine", "print this machine's stable name for asv results", _machine)
    t = command(
        "auto-table",
        "regenerate auto's CPU rule (lrbench/auto_cpu.json) from the CPUGrid asv rows",
        _auto_table,
    )
    t.add_argument(
        "--results",
        default="results",
        help="the results folder (holding asv/ with this machine's rows)",
    )
    t.add_argument(
        "--facts",
        action="store_true",
        help="instead, measure this machine's facts "
        "(bandwidth, hand-off, chain latency; about a second), cache them and print the "
        "rule auto derives from them where the file has no entry for this machine",
    )
    for name, (help, run, where) in LAZY.items():
        c = command(name, help, run)
        if only is None or only == name:  # their modules import torch: only when named
            module, function = where.rsplit(":", 1)
            getattr(_import(module), function)(c)
    command("info", "print the machine stamp results carry (JSON)", _info)
    p.set_defaults(commands=choices)
    return p


def _import(module: str):
    """A sub-command's module: lrbench's own (``.name``), or an experiment from the checkout this
    lrbench is installed from (``experiments.name``), which a wheel does not ship."""
    if not module.startswith("experiments."):
        return importlib.import_module(module, __package__)
    root = Path(__file__).resolve().parent.parent
    if (root / "experiments" / "__init__.py").is_file() and str(root) not in sys.path:
        sys.path.append(str(root))
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or not module.startswith(e.name):
            raise
        raise Failure(
            f"{module} is an experiment that runs from a checkout of lrbench "
            f"(experiments/ was not found beside {root / 'lrbench'})"
        ) from None


# Sub-commands whose options come from modules that import torch: (help, run, "module:parser").
LAZY = {
    "seed000": (
        "state-table training vs BPTT on problem 2b over lags (an experiment: runs "
        "from a checkout)",
        _seed000,
        "experiments.seed000.experiment:parser",
    ),
    "train": (
        "train a model on problem 2b (checkpoints, --resume, --overwrite)",
        _train,
        ".train:parser",
    ),
    "reproduce-2b": (
        "Table 3: GILR-LSTM vs LSTM on problem 2b over seeds",
        _reproduce,
        ".reproduce:parser",
    ),
    "seqpar-bench": (
        "time the sequence-parallel scan on 1, 2 and 4 CPU ranks (gloo) and count "
        "the bytes exchanged (an experiment: runs from a checkout)",
        _seqpar_bench,
        "experiments.seqpar:parser",
    ),
}


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename and e.strerror:
        text = f"{e.filename}: {e.strerror}"
    else:
        text = str(e) or type(e).__name__
    text = " ".join(text.split())
    if not isinstance(e, (Failure, OSError)) and type(e).__name__ != "CheckpointError":
        text = f"{type(e).__name__}: {text} (run with --debug for the traceback)"
    return text


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-commands' parsers, by name."""
    return parser.get_default("commands")


def _named(argv: list[str]) -> str | None:
    """The sub-command ``argv`` names (its first word that is not an option), if any."""
    return next((w for w in argv if not w.startswith("-")), None)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(only=_named(argv) or "")
    except Failure as e:
        print(f"lrbench {_named(argv)}: error: {e}", file=sys.stderr)
        return 1
    args, extra = parser.parse_known_args(argv)
    debug = getattr(args, "debug", False)  # given before or after the sub-command
    if extra:  # reported with the sub-command's own usage
        commands(parser)[args.cmd].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"lrbench {args.cmd}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        print(f"lrbench {args.cmd}: error: {_one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
