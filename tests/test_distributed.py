"""``lrbench.distributed.linear_recurrence`` on real process groups (gloo; NCCL where GPUs exist).

Every rank builds the same float64 sequence, takes its slice of the time axis, runs the
sequence-parallel scan and its backward, and compares its slice with the single-process result of
the same backend (<= 1e-10). Starting a group costs seconds, so one spawn runs many cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import lrbench
from conftest import TOL, make_inputs
from lrbench.distributed import linear_recurrence, linear_recurrence_with_start, scan, traffic
from lrbench.distributed import free_port

ROOT = Path(__file__).resolve().parent.parent
FP64 = 1e-10


def _worker(rank, world, port, backend, device, job):
    torch.set_num_threads(1)
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        job(rank, world, torch.device(device))
    finally:
        dist.destroy_process_group()


def _spawn(job, world, backend="gloo", device="cpu"):
    mp.spawn(_worker, args=(world, free_port(), backend, device, job), nprocs=world)


def _split(full: torch.Tensor, lengths, rank):
    off = sum(lengths[:rank])
    return full[off : off + lengths[rank]]


def _case(
    rank, lengths, rest, dtype=torch.float64, h0=True, backend="cpu-serial", device="cpu", seed=0
):
    """Max |distributed - single process| over h, start, ga, gx and gh0 on this rank, in float64
    (complex128 for complex dtypes: gates with a phase, inputs with an imaginary part).

    ``start`` is checked against h one step before the slice (h0 on rank 0), and gets a gradient
    of its own, so the backward's extra input is exercised too."""
    T, N = sum(lengths), 1
    for d in rest:
        N *= d
    base = torch.complex128 if dtype.is_complex else torch.float64
    a, x, hz = make_inputs(T, N, torch.float64, seed=seed, h0=h0)
    g = torch.Generator().manual_seed(seed + 1)
    if dtype.is_complex:
        turn = lambda t: torch.exp(
            2j * torch.pi * torch.rand(t.shape, generator=g, dtype=torch.float64)
        )
        a, x = a * turn(a), x * turn(x)
        hz = hz * turn(hz) if h0 else None
    shape = (T, *rest)
    a, x = a.reshape(shape), x.reshape(shape)
    hz = hz.reshape(rest) if h0 else None
    gh = torch.randn(shape, generator=g, dtype=base).to(device)
    gs = torch.randn((len(lengths), *rest), generator=g, dtype=base).to(device)
    cast = lambda t: None if t is None else t.to(dtype).to(device).clone().requires_grad_()
    dot = lambda p, q: (p.to(base) * q.conj()).real.sum()  # a real loss, complex or not

    # single process, the same backend and dtype
    A, X, H0 = cast(a), cast(x), cast(hz)
    h = lrbench.linear_recurrence(A, X, H0, backend=backend)
    before = torch.cat([(H0 if h0 else torch.zeros(rest, dtype=dtype, device=device))[None], h])
    starts = before[[sum(lengths[:r]) for r in range(len(lengths))]]  # h one step before each slice
    (dot(h, gh) + dot(starts, gs)).backward()

    # sequence parallel
    a_r, x_r = cast(_split(a, lengths, rank)), cast(_split(x, lengths, rank))
    h0_r = cast(hz) if rank == 0 else None
    h_r, s_r = linear_recurrence_with_start(a_r, x_r, h0_r, backend=backend)
    (dot(h_r, _split(gh, lengths, rank)) + dot(s_r, gs[rank])).backward()

    pairs = [
        (h_r, _split(h, lengths, rank)),
        (s_r, starts[rank]),
        (a_r.grad, _split(A.grad, lengths, rank)),
        (x_r.grad, _split(X.grad, lengths, rank)),
    ]
    if rank == 0 and h0:
        pairs.append((h0_r.grad, H0.grad))
    return max(
        ((p.detach().to(base) - q.detach().to(base)).abs().max().item() if q.numel() else 0.0)
        for p, q in pairs
    )


def _expect(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def _two_ranks(rank, world, device):
    # awkward lengths and layouts, h0 or not, a few backends
    for lengths in [(1, 1), (0, 5), (5, 0), (31, 33), (1000, 1), (1, 1024), (2, 0)]:
        for h0 in (True, False):
            err = _case(rank, lengths, (3,), h0=h0)
            assert err <= FP64, (lengths, h0, err)
    for be in ("reference", "torch-loop", "cpu-chunked", "torch-assoc", "log-space"):
        assert _case(rank, (17, 16), (2, 3), backend=be) <= FP64, be
    assert _case(rank, (9, 4), ()) <= FP64  # 1-D: one channel
    # a GPU backend, in Triton's interpreter on the CPU (conftest sets TRITON_INTERPRET=1)
    assert _case(rank, (17, 16), (3,), dtype=torch.float32, backend="triton-scan") <= 1e-5

    # complex gates (LRU/S5): the backward folds with conj(A), torch's convention
    for dtype, be, lengths in (
        (torch.complex128, "cpu-serial", (13, 20)),
        (torch.complex128, "torch-loop", (13, 0)),
        (torch.complex64, "auto", (7, 30)),
    ):
        err = _case(rank, lengths, (2,), dtype=dtype, backend=be)
        assert err <= (FP64 if dtype == torch.complex128 else 1e-5), (dtype, be, err)

    # 16-bit: fp32 summaries; against the float64 result with the dtype's tolerance
    for dtype in (torch.float16, torch.bfloat16):
        err = _case(rank, (40, 25), (4,), dtype=dtype, backend="torch-loop")
        tol = TOL[dtype]
        assert err <= 4 * (tol["atol"] + tol["rtol"] * 8), (dtype, err)

    # bytes: a header (8 int64) and one all-gather of 2N values forward, one of N backward
    a = torch.rand(6, 5, dtype=torch.float64, requires_grad=True)
    traffic.reset()
    linear_recurrence(a, a.detach().clone()).sum().backward()
    assert (traffic.collectives, traffic.bytes_received) == (3, 8 * 8 + 2 * 5 * 8 + 5 * 8)

    # errors: every rank raises, and the group stays usable
    ok = torch.rand(4, 3, dtype=torch.float64)
    _expect(
        lambda: linear_recurrence(ok, ok, torch.zeros(3, dtype=torch.float64)),
        ValueError,
        r"'h0' was given on rank\(s\) \[1\]; only rank 0",
    )
    other = torch.rand(4, 3 + rank, dtype=torch.float64)
    _expect(
        lambda: linear_recurrence(other, other), ValueError, "same N .* rank 0: N=3, rank 1: N=4"
    )
    layout = torch.rand(4, *((2, 3) if rank else (3, 2)), dtype=torch.float64)
    _expect(lambda: linear_recurrence(layout, layout), ValueError, "same shape after the time axis")
    typed = ok.float() if rank else ok
    _expect(
        lambda: linear_recurrence(typed, typed), TypeError, "same dtype .* rank 1: torch.float32"
    )
    bad_x = torch.rand(5, 3, dtype=torch.float64) if rank else ok  # the same error on both ranks
    _expect(
        lambda: linear_recurrence(ok, bad_x),
        ValueError,
        r"^rank 1 of 2: arguments 'a' and 'x' must have the same shape; got a \(4, 3\) and "
        r"x \(5, 3\)$",
    )
    grads = ok.clone().requires_grad_(rank == 0)
    _expect(
        lambda: linear_recurrence(grads, ok),
        RuntimeError,
        r"autograd records this call on rank\(s\) \[0\]",
    )
    assert _case(rank, (3, 4), (2,)) <= FP64

    # the comparison catches a broken exchange: forward (summaries dropped) and backward
    real = scan._all_gather
    for broken_call in (1, 2):  # 0 = header, 1 = (A, H), 2 = G
        calls = []

        def broken(t, group, world, *what, calls=calls, broken_call=broken_call):
            out = real(t, group, world, *what)
            calls.append(1)
            return out.zero_() if len(calls) - 1 == broken_call else out

        scan._all_gather = broken
        try:
            err = torch.tensor(_case(rank, (6, 7), (3,)))
        finally:
            scan._all_gather = real
        dist.all_reduce(err, op=dist.ReduceOp.MAX)  # the rank that sees it may be the other
        assert err > 1e-3, (broken_call, err)


def _three_ranks(rank, world, device):
    for lengths in [
        (5, 0, 7),
        (1, 1, 1),
        (0, 3, 2),
        (33, 31, 1),
        (0, 0, 4),
        (4, 0, 0),
        (0, 1, 0),
        (1025, 1, 2),
    ]:
        for h0 in (True, False):
            err = _case(rank, lengths, (4,), h0=h0, device=device, backend="auto")
            assert err <= FP64, (lengths, h0, err)
    assert _case(rank, (0, 0, 0), (4,)) <= FP64  # nothing to scan anywhere
    for lengths in [(5, 7, 6), (5, 0, 6)]:  # a middle rank's A enters the backward
        assert _case(rank, lengths, (2,), dtype=torch.complex128) <= FP64, lengths


def test_two_ranks_gloo_forward_backward_errors():
    _spawn(_two_ranks, 2)


def test_three_ranks_gloo_uneven_slices():
    _spawn(_three_ranks, 3)


def test_without_a_process_group_the_error_says_what_to_do():
    a = torch.rand(4, 2)
    with pytest.raises(RuntimeError, match="needs an initialised process group"):
        linear_recurrence(a, a)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_nccl_one_rank_per_gpu():
    _spawn(_on_gpus, min(torch.cuda.device_count(), 2), backend="nccl")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gloo_two_ranks_sharing_one_gpu():
    _spawn(_on_gpus, 2, device="cuda:0")  # the exchange of CUDA tensors, one GPU


def _on_gpus(rank, world, device):
    dev = device if device.type == "cuda" else torch.device("cuda", rank)
    torch.cuda.set_device(dev)
    splits = {1: [(64,), (0,), (1,)], 2: [(31, 33), (0, 5), (1, 1), (1000, 24)]}[world]
    for lengths in splits:
        for be in ("auto", "cuda-serial", "cuda-scan", "triton-scan"):
            dtype = torch.float32 if be == "triton-scan" else torch.float64
            err = _case(rank, lengths, (4,), dtype=dtype, backend=be, device=dev)
            assert err <= (FP64 if dtype == torch.float64 else 1e-5), (lengths, be, err)


# --- training: torchrun, two ranks, against the single-process run --------------------------------

TRAIN = [
    "--model",
    "gilr-lstm",
    "--T",
    "37",
    "--p",
    "6",
    "--hidden",
    "8",
    "--layers",
    "2",
    "--batch",
    "4",
    "--max-steps",
    "20",
    "--scan-backend",
    "cpu-serial",
    "--dtype",
    "float64",
    "--quiet",
    "--checkpoint-every",
    "10",
]


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_torchrun_sequence_parallel_training_matches_one_process(tmp_path):
    from lrbench.train import parser, train

    one = tmp_path / "one"
    train(parser().parse_args([*TRAIN, "--out", str(one)]))
    sp = tmp_path / "sp"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(free_port()),
            "-m",
            "lrbench",
            "train",
            "--sequence-parallel",
            *TRAIN,
            "--out",
            str(sp),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ref, got = _losses(one), _losses(sp)
    assert len(ref) == len(got) == 20
    assert max(abs(p - q) for p, q in zip(ref, got)) <= 1e-6, (ref, got)
    assert _losses(sp / "rank1") == got  # every rank logged the same losses


# --- the benchmark and its chart ------------------------------------------------------------------


def test_seqpar_bench_counts_bytes_and_report_charts_it(tmp_path):
    from lrbench import report
    from lrbench.cli import main

    csv = tmp_path / "cpu" / "seqpar.csv"
    assert (
        main(
            [
                "seqpar-bench",
                "--T",
                "1000",
                "--N",
                "4",
                "--ranks",
                "2",
                "--reps",
                "2",
                "--out",
                str(csv),
            ]
        )
        == 0
    )
    import pandas as pd

    row = pd.read_csv(csv).iloc[0]
    assert (row.ranks, row.slice_T, row.collectives_per_call) == (2, 500, 2)
    assert row.bytes_received_per_rank == 8 * 8 + 2 * 4 * 4  # header + (A, H) in float32
    assert (
        row.seconds > 0 and row.exchange_seconds > 0 and row.speedup != row.speedup
    )  # no 1-rank row
    with pytest.raises(report.NoResults) as no_asv:  # (no asv results in this folder)
        report.run(str(tmp_path))
    for path in (
        f"figures/seqpar_{row.machine}.png",
        f"figures/seqpar_{row.machine}.svg",
        f"tables/seqpar_{row.machine}.md",
    ):
        assert (tmp_path / path).stat().st_size > 0, (path, no_asv.value.problems)
    pd.read_csv(csv).drop(columns="speedup").to_csv(csv, index=False)
    with pytest.raises(report.NoResults) as no_asv:
        report.run(str(tmp_path))
    assert any("missing column(s) ['speedup']" in p for p in no_asv.value.problems), (
        no_asv.value.problems
    )


def test_sequence_parallel_training_refuses_what_it_cannot_do(tmp_path, monkeypatch):
    from lrbench.options import Failure
    from lrbench.train import parser, train

    args = lambda *extra: parser().parse_args(
        ["--sequence-parallel", "--out", str(tmp_path), "--quiet", *extra]
    )
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(Failure, match="start the run with torchrun"):
        train(args())
    for var, value in (
        ("RANK", "0"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "1"),
    ):
        monkeypatch.setenv(var, value)
    with pytest.raises(Failure, match="--model 'qrnn' is not supported"):
        train(args("--model", "qrnn"))
    with pytest.raises(Failure, match="--max-seconds"):
        train(args("--max-seconds", "10"))
