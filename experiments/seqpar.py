"""``lrbench seqpar-bench`` (an experiment: runs from a checkout): the sequence-parallel scan on
1, 2, 4 CPU ranks (gloo), timed; bytes counted.

asv runs one process per benchmark, so it cannot start a process group; this command does, with
``torch.multiprocessing`` (spawn) and gloo over loopback. For each (T, ranks) every rank generates
its own slice of ``(T, N)`` float32 inputs (gates near 1), runs one untimed call, then ``reps``
timed calls between barriers; a call's time is the slowest rank's (all-reduce max), the point's
the median over calls. Alongside: the payload bytes this rank's collectives received per call
(``lrbench.distributed.traffic``) and the median time of the summary all-gather alone (2·N values
per rank, the exchange's latency). Each rank gets ``cores // ranks`` intra-op threads (at least 1),
so more ranks than cores oversubscribe the machine, and the CSV says so (and the 1-minute load
average before each point: other processes share the cores too). A point whose inputs and
outputs (12·T·N bytes) do not fit in 70 % of the available memory is skipped with a message.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lrbench import atomic, machine
from lrbench.distributed import free_port, linear_recurrence, traffic
from lrbench.options import POSITIVE_INT, Failure, writable_dir

TS = (1 << 22, 1 << 24)
RANKS = (1, 2, 4)
N = 256
BYTES_PER_ELEMENT = 12  # float32: read a and x, write h
LATENCY_REPS = 50


def _rank_main(rank, world, port, T, N, reps, backend, threads, out_path):
    torch.set_num_threads(threads)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        T_r = len(torch.arange(T).tensor_split(world)[rank])
        g = torch.Generator().manual_seed(rank)
        a = torch.rand(T_r, N, generator=g).mul_(1e-3).add_(0.999)
        x = torch.randn(T_r, N, generator=g)
        with torch.no_grad():
            linear_recurrence(a[:64], x[:64], backend=backend)  # compile, connect
            linear_recurrence(a, x, backend=backend)  # first touch
            times = []
            traffic.reset()
            for _ in range(reps):
                dist.barrier()
                t0 = time.perf_counter()
                h = linear_recurrence(a, x, backend=backend)
                elapsed = torch.tensor(time.perf_counter() - t0, dtype=torch.float64)
                del h
                dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
                times.append(elapsed.item())
            calls, received = traffic.collectives / reps, traffic.bytes_received / reps
            summary = torch.zeros(2 * N)
            gathered = summary.new_empty(world * 2 * N)
            lat = []
            for _ in range(LATENCY_REPS):
                dist.barrier()
                t0 = time.perf_counter()
                dist.all_gather_single(gathered, summary)
                lat.append(time.perf_counter() - t0)
            lat_t = torch.tensor(statistics.median(lat), dtype=torch.float64)
            dist.all_reduce(lat_t, op=dist.ReduceOp.MAX)
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump(
                    dict(
                        times=times,
                        collectives=calls,
                        bytes_received=received,
                        slice_T=T_r,
                        exchange_seconds=lat_t.item(),
                    ),
                    f,
                )
    finally:
        dist.destroy_process_group()


def measure(T: int, ranks: int, N: int = N, reps: int = 3, backend: str = "auto") -> dict:
    """One point: spawn ``ranks`` gloo processes and time the scan at (T, N) float32."""
    cores = os.cpu_count() or 1
    threads = max(1, cores // ranks)
    load = os.getloadavg()[0]  # other work on the machine, before this point
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rank0.json")
        mp.spawn(
            _rank_main, args=(ranks, free_port(), T, N, reps, backend, threads, path), nprocs=ranks
        )
        with open(path) as f:
            r = json.load(f)
    seconds = statistics.median(r["times"])
    return dict(
        T=T,
        N=N,
        ranks=ranks,
        dtype="float32",
        backend=backend,
        pass_="forward",
        seconds=seconds,
        min_seconds=min(r["times"]),
        reps=reps,
        slice_T=r["slice_T"],
        gbps=BYTES_PER_ELEMENT * T * N / seconds / 1e9,
        collectives_per_call=r["collectives"],
        bytes_received_per_rank=r["bytes_received"],
        exchange_seconds=r["exchange_seconds"],
        threads_per_rank=threads,
        cores=cores,
        oversubscribed=ranks > cores,
        load_average=load,
    )


def run(
    Ts=TS,
    ranks=RANKS,
    N: int = N,
    reps: int = 3,
    backend: str = "auto",
    out: str = "results/cpu/seqpar.csv",
) -> pd.DataFrame:
    stamp = dict(machine.info(), machine=machine.name())
    rows = []
    for T in Ts:
        need = BYTES_PER_ELEMENT * T * N + 4 * T * N // 2  # + a middle rank's summary scan
        have = machine.available_memory() or 1 << 62
        if need > 0.7 * have:
            print(
                f"skipped T={T} N={N}: needs {need / 2**30:.1f} GiB of inputs and outputs, "
                f"{have / 2**30:.1f} GiB available",
                flush=True,
            )
            continue
        for P in ranks:
            row = measure(T, P, N, reps, backend)
            rows.append(dict(row, **stamp))
            print(
                f"T={T:9d} N={N} ranks={P}: {row['seconds'] * 1e3:9.1f} ms "
                f"({row['gbps']:.2f} GB/s), {row['collectives_per_call']:.0f} collectives and "
                f"{row['bytes_received_per_rank']:.0f} B received per rank per call, exchange "
                f"{row['exchange_seconds'] * 1e6:.0f} us{' (oversubscribed)' if row['oversubscribed'] else ''}",
                flush=True,
            )
    df = pd.DataFrame(rows).rename(columns={"pass_": "pass"})
    if not df.empty:
        one = df[df.ranks == 1].set_index("T")["seconds"]
        df["speedup"] = [one.get(T, float("nan")) / s for T, s in zip(df["T"], df.seconds)]
        atomic.write_csv(df, out)
    return df


def parser(p):
    p.add_argument(
        "--T",
        type=POSITIVE_INT,
        action="append",
        help=f"sequence length (repeatable; default {list(TS)})",
    )
    p.add_argument(
        "--ranks",
        type=POSITIVE_INT,
        action="append",
        help=f"rank count (repeatable; default {list(RANKS)})",
    )
    p.add_argument("--N", type=POSITIVE_INT, default=N, help="channels")
    p.add_argument("--reps", type=POSITIVE_INT, default=3, help="timed calls per point (median)")
    from lrbench.registry import names

    p.add_argument(
        "--backend",
        choices=["auto", *names()],
        default="auto",
        metavar="NAME",
        help="the local scan's backend (see `lrbench backends`)",
    )
    p.add_argument("--out", default="results/cpu/seqpar.csv", help="CSV to write (atomically)")
    return p


def main(args) -> int:
    out = Path(args.out)
    writable_dir(out.parent, "--out")
    if out.is_dir():
        raise Failure(f"--out {out}: is a folder; give the CSV file to write")
    df = run(
        tuple(args.T or TS), tuple(args.ranks or RANKS), args.N, args.reps, args.backend, args.out
    )
    if df.empty:
        print("nothing measured; no CSV written")
        return 1
    print(f"wrote {args.out}")
    return 0
