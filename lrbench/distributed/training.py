"""``lrbench train --sequence-parallel`` under torchrun: each sequence split over the ranks.

Every rank builds the same model (same seed) and draws the same minibatch, then keeps its slice of
the time axis: rank r gets steps ``[lo_r, hi_r)`` of ``torch.tensor_split``. The embedding, the
gates and every per-step product are local; only the recurrences cross ranks, through
``lrbench.distributed`` (one summary exchange per recurrence per direction; a GILR-LSTM layer has
two recurrences). The readout sees the last step, which the last rank holds: its loss is the loss;
the other ranks back-propagate ``0 · loss`` so that they run the same exchanges. Each rank's
parameter gradients cover its slice only, so they are summed over the ranks (one all-reduce) before
the optimiser step, which then keeps every rank's weights identical.

Identical weights need one starting point: with ``--resume`` the ranks agree on the step to resume
from (``common_step``: the newest step whose checkpoint every rank can load), so a damaged newest
checkpoint on one rank moves every rank back to the previous one, never that rank alone.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..models.layers import QRNN
from ..options import Failure

SUPPORTED = ("gilr", "gilr-lstm", "sru")


def newest_common_step(steps_of_each_rank: list[list[int]]) -> int | None:
    """The newest step in every rank's list of loadable checkpoint steps; None when none is."""
    if not steps_of_each_rank:
        return None
    common = set(steps_of_each_rank[0]).intersection(*steps_of_each_rank[1:])
    return max(common) if common else None


def set_sequence_parallel(module: torch.nn.Module, group) -> None:
    """Run every recurrence in ``module`` over the ranks of ``group`` (None: on one process)."""
    for mod in module.modules():
        if isinstance(mod, QRNN) and group is not None:
            raise Failure(
                "sequence parallelism: a QRNN's convolution reads the k-1 steps before "
                f"each slice, on the previous rank; supported models: {', '.join(SUPPORTED)}"
            )
        if hasattr(mod, "scan_group"):
            mod.scan_group = group


class SequenceParallel:
    """This process's place in the torchrun job, and one training step split over the ranks."""

    def __init__(self, args):
        missing = [
            v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ
        ]
        if missing and not dist.is_initialized():
            raise Failure(
                f"--sequence-parallel: start the run with torchrun, e.g. `torchrun "
                f"--nproc-per-node 2 -m lrbench train --sequence-parallel ...` "
                f"({', '.join(missing)} not set)"
            )
        if args.model not in SUPPORTED:
            raise Failure(
                f"--sequence-parallel: argument --model {args.model!r} is not supported; "
                f"supported: {', '.join(SUPPORTED)}"
            )
        if args.max_seconds is not None and math.isfinite(args.max_seconds):
            raise Failure(
                "--sequence-parallel: argument --max-seconds would stop the ranks at "
                "different steps; use --max-steps"
            )
        self.device = torch.device(args.device)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if args.T < self.world:
            raise Failure(
                f"--sequence-parallel: argument --T={args.T} gives some of the "
                f"{self.world} ranks no step; use T >= {self.world}"
            )
        sizes = [len(s) for s in torch.arange(args.T).tensor_split(self.world)]
        self.lo = sum(sizes[: self.rank])
        self.hi = self.lo + sizes[self.rank]

    def out(self, out: Path) -> Path:
        """Rank 0 writes to ``out``, rank r to ``out/rank{r}`` (the same losses; nothing shared)."""
        return out if self.rank == 0 else out / f"rank{self.rank}"

    def common_step(self, steps: list[int], problems: list[str]) -> int:
        """The step every rank resumes from: the newest in every rank's ``steps`` (the steps of the
        checkpoints it can load; ``problems``: why it cannot load the others). Called by every
        rank; a Failure on every rank, saying what each holds, when no step is common."""
        every: list = [None] * self.world
        dist.all_gather_object(every, (sorted(steps, reverse=True), list(problems)))
        step = newest_common_step([s for s, _ in every])
        if step is None:
            held = "; ".join(
                f"rank {r}: "
                + (f"step{'s' * (len(s) > 1)} {', '.join(map(str, s))}" if s else "none")
                + (f" ({'; '.join(p)})" if p else "")
                for r, (s, p) in enumerate(every)
            )
            raise Failure(f"--resume: no checkpoint step that every rank can load ({held})")
        return step

    def agree(self, problem: str | None) -> None:
        """Every rank's verdict on a step it took alone (None: fine), gathered: a Failure on every
        rank, naming each failing rank, when any failed; so no rank goes on to wait for the others
        in an exchange they will never reach (a busy --out on one rank, say)."""
        every: list = [None] * self.world
        dist.all_gather_object(every, problem)
        bad = [f"rank {r}: {p}" for r, p in enumerate(every) if p]
        if bad:
            raise Failure("; ".join(bad))

    def attach(self, model: torch.nn.Module) -> None:
        set_sequence_parallel(model, dist.group.WORLD)

    def step(self, model, idx, sign, label) -> tuple[float, float]:
        """Forward and backward of one minibatch over the ranks; (loss, accuracy) of the whole."""
        logits = model(idx[self.lo : self.hi], sign if self.rank == 0 else None)
        loss = F.cross_entropy(logits, label)
        last = self.rank == self.world - 1
        (loss * float(last)).backward()
        for p in model.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in model.parameters()]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        for g, s in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(s.view_as(g))
        acc = (logits.argmax(-1) == label).to(flat.dtype).mean()
        stats = torch.stack([loss.detach(), acc]) if last else flat.new_zeros(2)
        dist.broadcast(stats, src=self.world - 1)
        loss_value, acc_value = stats.tolist()
        return loss_value, acc_value
