"""The latency and bandwidth model of ``cuda-scan`` (kernels/README.md holds its tables).

``python -m benchmarks.scan_model`` prints the README's model section; tests/test_gpu_bench.py
checks that the README holds exactly this output. A GPU run checks the model against
``bench_scan`` and ``bench_bandwidth`` (stage b of benchmarks/gpu.sh).

A scan of T x N fp32 elements moves ``bytes`` = 12 TN forward, 20 TN for the fused backward.
Its time is modelled as ``t0 + max(t_mem, t_chain, t_occ)``:
- ``t_mem = bytes / (0.9 B)``: HBM at the 90 % a device-to-device copy reaches (4.3 of 4.8 TB/s
  measured on an H200 here).
- ``t_chain = ceil(n_tb / W) * t_link``: the inclusive prefixes form a chain with stride W (tile
  tb starts from the prefix of tile tb - W); each link costs ``t_link``. The n_cg channel groups
  are independent chains.
- ``t_occ = ceil(tiles / slots) * t_block``: a block holds one of ``slots`` resident places for
  the latency of its tile (``2 l_hbm``) plus its look-back ``t_lb``.
Latencies (leads, to be measured): ``l`` = 0.5 us for a dependent round trip to L2 (a flag poll,
an aggregate load), ``f`` = 0.5 us for a publish (fence, barrier, flag store), ``b`` = 0.05 us a
block barrier, ``l_hbm`` = 0.8 us, ``t0`` = 5 us for the launch and the first and last tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lrbench.scan.cuda import scan as cuda_scan

L2_TRIP, PUBLISH, BARRIER, HBM_TRIP, T0 = 0.5e-6, 0.5e-6, 0.05e-6, 0.8e-6, 5e-6
COPY_SHARE = 0.9
SMEM_PER_SM, THREADS_PER_SM, REGS_PER_SM, REGS = 228 * 1024, 2048, 65536, 64
DEVICES = {"H100": (3.35e12, 132), "H200": (4.8e12, 132)}
TS = [1 << k for k in range(10, 25, 2)]
NS = [1, 8, 32, 256, 4096]
BYTES = {"forward": 12, "backward": 20}


@dataclass(frozen=True)
class Design:
    name: str
    window: int | None  # fixed W, or None: the plan's (cuda_scan.window)
    items: dict | None  # L per direction for narrow scans, or None: always cuda_scan.ITEMS
    parallel: bool  # look-back polled and loaded by the whole block


OLD = Design("old", 16, None, False)
NEW = Design("new", None, cuda_scan.NARROW_ITEMS, True)


def shape(design: Design, N: int, direction: str):
    """(CB, S, L, W, n_cg) as cuda_scan.plan chooses them under this design."""
    CB = min(N, cuda_scan.MAX_CB)
    S = cuda_scan.THREADS // CB
    n_cg = -(-N // CB)
    L = design.items[direction] if design.items and n_cg == 1 else cuda_scan.ITEMS
    W = design.window or cuda_scan.window(CB, S)
    return CB, S, L, W, n_cg


def seconds(design: Design, device: str, T: int, N: int, direction: str) -> float:
    bandwidth, sms = DEVICES[device]
    CB, S, L, W, n_cg = shape(design, N, direction)
    rows = S * L
    n_tb = -(-T // rows)
    tiles = n_tb * n_cg
    t_mem = BYTES[direction] * T * N / (COPY_SHARE * bandwidth)
    if design.parallel:
        run = -(-min(W - 1, max(n_tb - 1, 0)) // S)
        t_lb = L2_TRIP + math.ceil(run / 4) * L2_TRIP + 2 * math.log2(S) * BARRIER + 2 * L2_TRIP
        t_link = 2 * L2_TRIP + PUBLISH + 3 * BARRIER
    else:
        t_lb = min(W, n_tb) * 2 * L2_TRIP  # one predecessor at a time: flag, then data
        t_link = 2 * L2_TRIP + PUBLISH
    t_chain = math.ceil(n_tb / W) * t_link if n_tb > 1 else 0.0
    smem = cuda_scan.Plan(CB, S, n_cg, n_tb, False, L, W).smem_bytes(
        2 if direction == "forward" else 3
    )
    per_sm = min(
        THREADS_PER_SM // cuda_scan.THREADS,
        SMEM_PER_SM // smem,
        REGS_PER_SM // (cuda_scan.THREADS * REGS),
    )
    t_occ = math.ceil(tiles / (per_sm * sms)) * (2 * HBM_TRIP + (t_lb if n_tb > 1 else 0.0))
    return T0 + max(t_mem, t_chain, t_occ)


def gbps(design, device, T, N, direction) -> float:
    return BYTES[direction] * T * N / seconds(design, device, T, N, direction) / 1e9


def table(device: str, direction: str) -> str:
    head = "| T \\ N | " + " | ".join(f"{N} old / new" for N in NS) + " |"
    rule = "|---|" + "---|" * len(NS)
    lines = [head, rule]
    for T in TS:
        cells = [
            f"{gbps(OLD, device, T, N, direction):.0f} / {gbps(NEW, device, T, N, direction):.0f}"
            for N in NS
        ]
        lines.append(f"| 2^{T.bit_length() - 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown() -> str:
    out = []
    for device, (bw, _) in DEVICES.items():
        for direction in ("forward", "backward"):
            what = (
                "forward (12 B/element)"
                if direction == "forward"
                else "fused backward (20 B/element)"
            )
            out.append(f"**{device}** ({bw / 1e12:.2f} TB/s), {what}, predicted GB/s, old / new:\n")
            out.append(table(device, direction) + "\n")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown(), end="")
