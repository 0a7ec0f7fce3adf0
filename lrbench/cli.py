"""The ``lrbench`` command: bench, report, perfcheck, train, backends, kernels, machine, info."""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="lrbench", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="time the available backends over sequence lengths")
    b.add_argument("--full", action="store_true", help="the full grid (default: quick)")
    b.add_argument("--out", default="results/cpu/bench.csv", help="CSV to write (atomically)")
    sub.add_parser("backends", help="list backends and whether they are available here")
    k = sub.add_parser("kernels", help="compile kernels/*.cu with NVRTC; print ptxas's report")
    k.add_argument("--arch", action="append", help="e.g. sm_90 (repeatable; default sm_80, sm_90)")
    r = sub.add_parser("report", help="regenerate charts and tables from results/asv")
    r.add_argument("--results", default="results", help="the results folder")
    sub.add_parser("perfcheck", help="CI performance gate: same-process ratios vs thresholds")
    sub.add_parser("machine", help="print this machine's stable name for asv results")
    from .seed000.experiment import parser as seed000_parser
    seed000_parser(sub.add_parser("seed000", help="state-table training vs BPTT on problem 2b over lags"))
    from .train import parser as train_parser
    train_parser(sub.add_parser("train", help="train a model on problem 2b (checkpoints, --resume)"))
    from .reproduce import parser as repro_parser
    repro_parser(sub.add_parser("reproduce-2b", help="Table 3: GILR-LSTM vs LSTM over seeds"))
    sub.add_parser("info", help="print the machine stamp results carry")
    from .distributed.bench import parser as seqpar_parser
    seqpar_parser(sub.add_parser("seqpar-bench", help="sequence-parallel scan on 1, 2, 4 CPU ranks: time, bytes"))
    args = p.parse_args(argv)

    if args.cmd == "bench":
        import pandas as pd

        from .bench import run, speedup_table
        df = run(quick=not args.full, out=args.out)
        with pd.option_context("display.float_format", "{:.2f}".format, "display.width", 120):
            print("\nspeedup over cpu-serial (higher is faster):")
            print(speedup_table(df))
        print(f"\nwrote {args.out}")
    elif args.cmd == "backends":
        from . import backends
        for row in backends():
            mark = "yes" if row["available"] else f"no ({row['reason']})"
            print(f"{row['name']:12s} {mark:40s} {row['summary']}")
    elif args.cmd == "kernels":
        from . import kernels
        print(f"{'function':22s} {'arch':6s} {'regs':>4s} {'stack':>5s} {'spill st':>8s} "
              f"{'spill ld':>8s} {'smem':>5s}")
        for path in kernels.sources():
            for arch in args.arch or kernels.ARCHS:
                for r in kernels.compile_report(path, arch)[0]:
                    print(f"{r.function:22s} {r.arch:6s} {r.registers:4d} {r.stack_bytes:5d} "
                          f"{r.spill_stores:8d} {r.spill_loads:8d} {r.smem_bytes:5d}")
    elif args.cmd == "report":
        from .report import run as report
        written, problems = report(args.results)
        for p in problems:
            print(f"warning: {p}", file=sys.stderr)
        for w in written:
            print(f"wrote {w}")
    elif args.cmd == "perfcheck":
        from .perfcheck import main as perfcheck
        return perfcheck()
    elif args.cmd == "train":
        from .train import train
        summary = train(args)
        print(json.dumps({k: summary[k] for k in ("model", "T", "steps", "seconds", "converged")}))
    elif args.cmd == "reproduce-2b":
        from .reproduce import run as reproduce
        print(reproduce(args).to_string())
    elif args.cmd == "seed000":
        from .seed000.experiment import main as seed000
        return seed000(["--preset", args.preset, "--out", args.out, "--jobs", str(args.jobs)])
    elif args.cmd == "seqpar-bench":
        from .distributed.bench import main as seqpar_bench
        return seqpar_bench(args)
    elif args.cmd == "machine":
        from .machine import name
        print(name())
    elif args.cmd == "info":
        from .machine import info
        json.dump(info(), sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
