"""The ``lrbench`` command: ``bench`` (time the backends), ``backends``, ``info``."""
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
    sub.add_parser("info", help="print the machine stamp results carry")
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
    elif args.cmd == "info":
        from .machine import info
        json.dump(info(), sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
