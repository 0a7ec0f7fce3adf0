"""``lrbench seed000 --preset round2``: is the GRU hybrid's lag-128 result real?

The stages, in this order, on problem 2b (p = 8) unless named otherwise; every run trains on
``batch`` sequences per step and is scored by sequential roll-out from the zero state:

- ``fair``: BPTT on fresh sequences every step and on fixed sets of M sequences, the hybrid on
  fixed sets, at lags ``fair_lags``. Each (method, data) first runs every learning rate of ``lrs``
  with the sweep seeds; the rate with the best *validation* result (solved, then fewest steps, then
  accuracy) then runs the other seeds. The held-out *test* set is scored once, when a run stops.
  DEER (on fresh sequences) computes BPTT's gradient: its runs show whether they track BPTT's.
- ``ablate``: the hybrid at ``ablate_lag`` with 0, 1, 2, 4 or converged sweeps per step, a frozen
  table (K = 4) and consistency weights μ of 0.1 and 10.
- ``table``: the seed's own method (the table, no sweep) on both cells at ``table_lags``, every lag
  run whatever the shorter ones did: round one's skip rule assumed that a lag too long for it
  stays too long.
- ``drift``: the hybrid on the tanh and GRU cells at ``drift_lag``; every evaluation records how
  far the table is from the roll-out of the same training sequences, and the information front
  (``front.py``) of the table and of the roll-out (``trace_<preset>.csv``).
- ``adding``: the adding problem for BPTT, DEER (both fresh) and the hybrid at ``adding_lags``,
  with ``adding_max_steps`` (BPTT needs about 400 steps at lag 16 to be within 0.04 on 99 %).
- ``budget``: BPTT on fresh sequences at the fair lags after the first, every rate, the sweep
  seeds, with ``BUDGET_FACTOR`` times the step and time budgets: is its failure only the budget?
- ``edge``: BPTT (fresh and the largest fixed set) and the hybrid (the smallest) at ``edge_lrs``,
  above the sweep's rates, at the fair lags after the first, every seed: is the best rate above
  the grid?
- ``long``: per method (DEER aside), the data regime that did best at the last fair lag, if it
  solved most seeds there, at its chosen rate, at ``long_lags`` with ``long_seeds``.

A (method, data) with no solved run at one lag is not run at the longer ones of its stage (rows
with ``stopped_by = skipped``). Then every method's milliseconds per step are timed alone on one
thread, on ``threads`` threads and on one thread with subnormals flushed (``timing_<preset>.csv``,
with the scan inside one quasi-DEER sweep timed alone beside it), and the summary and charts are drawn.
Rows are written atomically after every run; finished runs are kept, so an interrupted preset
continues where it stopped.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass

import pandas as pd
import torch

from lrbench import atomic
from lrbench import linear_recurrence
from lrbench.timing import median_time
from . import methods, tasks
from .cells import GRUCell, TanhCell
from .front import front
from .methods import Method
from .selection import choose_lr, depth_per_step  # noqa: F401 - part of round2's interface

CELLS = {"tanh": TanhCell, "gru": GRUCell}
N_HIDDEN, P = 32, 8
SOLVED = 0.99  # validation accuracy that stops a run


@dataclass(frozen=True)
class Config:
    """One training recipe; ``data`` is "fresh" or "M=<size>" (a fixed training set)."""

    stage: str
    task: str
    cell: str
    method: str
    data: str
    sweeps: int = 1  # hybrid only; methods.CONVERGE: until converged
    freeze: int = 1
    mu: float = 1.0
    trace: bool = False

    @property
    def label(self) -> str:
        name = f"{self.method} {self.data}"
        if self.method == "hybrid" and (self.sweeps, self.freeze, self.mu) != (1, 1, 1.0):
            sweeps = "conv" if self.sweeps == methods.CONVERGE else self.sweeps
            name += f" sweeps={sweeps} K={self.freeze} mu={self.mu:g}"
        return name


STAGES = ["fair", "ablate", "table", "drift", "adding", "budget", "edge", "long", "timing"]
BUDGET_FACTOR = 5  # the budget stage's step and time budgets

PRESETS = {
    "round2": dict(
        lrs=(0.002, 0.005, 0.01, 0.02, 0.05),
        edge_lrs=[0.1, 0.2],
        sweep_seeds=[0],
        more_seeds=[1, 2],
        sizes=(512, 2048, 8192),
        batch=512,
        val=512,
        test=1024,
        fair_lags=[32, 64, 128],
        ablate_lag=64,
        table_lags=[16, 32, 64, 128],
        drift_lag=16,
        adding_lags=[16, 32, 64],
        long_lags=[256, 512, 1024],
        long_seeds=[0, 1, 2, 3, 4],
        max_steps=400,
        max_seconds=180.0,
        long_max_seconds=480.0,
        adding_max_steps=1000,
        eval_every=5,
        threads=2,
        reps=3,
    ),
    "round2-quick": dict(
        lrs=(0.01, 0.03),
        edge_lrs=[0.1],
        sweep_seeds=[0],
        more_seeds=[1],
        sizes=(32, 64),
        batch=32,
        val=64,
        test=64,
        fair_lags=[4, 8],
        ablate_lag=4,
        table_lags=[4, 8],
        drift_lag=4,
        adding_lags=[4, 8],
        long_lags=[16],
        long_seeds=[0, 1],
        max_steps=30,
        max_seconds=20.0,
        long_max_seconds=20.0,
        adding_max_steps=40,
        eval_every=5,
        threads=2,
        reps=1,
    ),
}


def _configs(cfg: dict) -> dict[str, list[Config]]:
    small, *_ = cfg["sizes"]
    fixed = [f"M={m}" for m in cfg["sizes"]]
    hybrid = lambda **kw: Config("ablate", "2b", "gru", "hybrid", f"M={small}", trace=True, **kw)
    return {
        "fair": [Config("fair", "2b", "gru", "bptt", d) for d in ["fresh", fixed[0], fixed[-1]]]
        + [Config("fair", "2b", "gru", "hybrid", d) for d in fixed]
        + [Config("fair", "2b", "gru", "deer", "fresh")],
        "ablate": [hybrid(sweeps=s) for s in (0, 1, 2, 4, methods.CONVERGE)]
        + [hybrid(freeze=4), hybrid(mu=0.1), hybrid(mu=10.0)],
        "table": [
            Config("table", "2b", c, "hybrid", f"M={small}", sweeps=0) for c in ("tanh", "gru")
        ],
        "drift": [
            Config("drift", "2b", c, "hybrid", f"M={small}", trace=True) for c in ("tanh", "gru")
        ],
        "edge": [
            Config("edge", "2b", "gru", m, d)
            for m, d in (("bptt", "fresh"), ("bptt", fixed[-1]), ("hybrid", fixed[0]))
        ],
        "budget": [Config("budget", "2b", "gru", "bptt", "fresh")],
        "adding": [Config("adding", "adding", "gru", m, "fresh") for m in ("bptt", "deer")]
        + [Config("adding", "adding", "gru", "hybrid", f"M={small}")],
    }


def _sets(task: tasks.Task, cfg: dict, config: Config, N: int, seed: int):
    """(training set, validation set, test set, fresh sampler or None); seeds keep them apart."""
    M = cfg["batch"] if config.data == "fresh" else int(config.data[2:])
    train = task.sample(M, N, seed)
    val, test = (
        task.sample(cfg["val"], N, 20_000 + seed),
        task.sample(cfg["test"], N, 10_000 + seed),
    )
    fresh = (lambda s: task.sample(cfg["batch"], N, 30_000 + s)) if config.data == "fresh" else None
    return train, val, test, fresh


def _setup(config: Config, N: int, seed: int, lr: float, cfg: dict):
    """(task, method, training set, validation set, test set, fresh sampler) of one run, seeded."""
    torch.manual_seed(seed)
    task = tasks.make(config.task, P)
    train, val, test, fresh = _sets(task, cfg, config, N, seed)
    m = methods.make(
        config.method,
        CELLS[config.cell](task.m, N_HIDDEN),
        N_HIDDEN,
        *train,
        lr,
        config.mu,
        sweeps=config.sweeps,
        freeze=config.freeze,
        loss=task.loss,
        out=task.out,
        batch=cfg["batch"],
        fresh=fresh,
        seed=seed,
    )
    return task, m, train, val, test, fresh


def run_one(config: Config, N: int, seed: int, lr: float, cfg: dict, max_seconds: float):
    """One run: (row, trace rows). Stops when the validation accuracy reaches ``SOLVED`` at an
    evaluation (every ``eval_every`` steps), after ``max_steps`` or, at an evaluation, after
    ``max_seconds``; then scores the test set once."""
    task, m, (x, y), (vx, vy), (tx, ty), fresh = _setup(config, N, seed, lr, cfg)
    score = lambda a, b: task.correct(m.logits(a), b).float().mean().item()
    trace, solved_at, val, s, start = [], None, 0.0, 0, time.perf_counter()
    for s in range(1, cfg["max_steps"] + 1):
        m.step()
        if s % cfg["eval_every"]:
            continue
        val = score(vx, vy)
        if config.trace:
            drift_max, drift_mean = m.model.drift(x)
            fr = front(m.states(), y) if config.task == "2b" else float("nan")
            trace.append(
                dict(
                    **asdict(config),
                    N=N,
                    seed=seed,
                    lr=lr,
                    step=s,
                    val_acc=val,
                    drift_max=drift_max,
                    drift_mean=drift_mean,
                    max_residual=m.model.max_residual(x),
                    table_front=fr,
                    rollout_front=front(Method.states(m), y)
                    if config.task == "2b"
                    else float("nan"),
                )
            )
        if val >= SOLVED:
            solved_at = s
            break
        if time.perf_counter() - start > max_seconds:
            break
    seconds = time.perf_counter() - start
    extras = m.extras()
    fixed = fresh is None  # a fresh run has no training set to score or epochs to count
    row = dict(
        **asdict(config),
        N=N,
        seed=seed,
        lr=lr,
        label=config.label,
        batch=cfg["batch"],
        max_steps=cfg["max_steps"],
        max_seconds=max_seconds,
        solved=solved_at is not None,
        steps=solved_at or s,
        stopped_by="solved" if solved_at else ("steps" if s == cfg["max_steps"] else "time"),
        val_acc=val,
        test_acc=score(tx, ty),
        train_acc=score(x, y) if fixed else float("nan"),
        epochs=(solved_at or s) * m.epochs_per_step if fixed else float("nan"),
        seconds=seconds,
    )
    row["depth_per_step"] = depth_per_step(
        config.method, N, extras.get("sweeps_per_step", 0.0), extras.get("deer_iters_per_step", 0.0)
    )
    row.update(
        {
            k: v
            for k, v in extras.items()
            if k in ("max_residual", "train_lookup_acc", "sweeps_per_step")
        }
    )
    return row, trace


def _job(args):
    torch.set_num_threads(1)
    return run_one(*args)


class Store:
    """The preset's runs and traces, rewritten atomically after every run."""

    def __init__(self, out, preset):
        self.paths = {k: out / f"{k}_{preset}.csv" for k in ("runs", "trace", "timing")}
        load = lambda k: pd.read_csv(self.paths[k]) if self.paths[k].exists() else pd.DataFrame()
        self.runs, self.trace, self.timing = load("runs"), load("trace"), load("timing")
        if (
            not self.runs.empty and "max_seconds" not in self.runs
        ):  # rows from before it was recorded
            self.runs["max_seconds"] = float("nan")

    def _rows(self, config: Config, N: int):
        if self.runs.empty:
            return self.runs
        r = self.runs
        want = dict(asdict(config), N=N)
        want.pop("trace")
        mask = pd.Series(True, index=r.index)
        for k, v in want.items():
            mask &= (r[k] - v).abs() < 1e-12 if isinstance(v, float) else r[k] == v
        return r[mask]

    def has(self, config, N, seed, lr) -> bool:
        rows = self._rows(config, N)
        return not rows.empty and ((rows.seed == seed) & ((rows.lr - lr).abs() < 1e-12)).any()

    def add(self, row: dict, trace: list[dict]):
        self.runs = pd.concat([self.runs, pd.DataFrame([row])], ignore_index=True)
        if trace:
            self.trace = pd.concat([self.trace, pd.DataFrame(trace)], ignore_index=True)
            atomic.write_csv(self.trace, self.paths["trace"])
        atomic.write_csv(self.runs, self.paths["runs"])

    def solved_any(self, config, N) -> bool:
        rows = self._rows(config, N)
        return not rows.empty and bool(rows.solved.fillna(False).astype(bool).any())

    def chosen_lr(self, config, N, seeds) -> float | None:
        return choose_lr(self._rows(config, N), seeds)


def _execute(store: Store, pool, jobs, bar):
    """Run the jobs not yet in ``store`` (on ``pool`` when given), adding each row as it finishes."""
    todo = [j for j in jobs if not store.has(j[0], j[1], j[2], j[3])]
    bar.total += len(todo)
    bar.refresh()
    results = pool.map(_job, todo) if pool else map(_job, todo)
    for row, trace in results:
        store.add(row, trace)
        bar.update(1)


def _skip(store: Store, config: Config, N: int, seeds, lrs):
    for seed, lr in itertools.product(seeds, lrs):
        if not store.has(config, N, seed, lr):
            store.add(
                dict(
                    **asdict(config),
                    N=N,
                    seed=seed,
                    lr=lr,
                    label=config.label,
                    solved=False,
                    stopped_by="skipped",
                ),
                [],
            )


def _lagged(
    store, pool, bar, cfg, configs, lags, seeds, lrs_of, max_seconds, sweep=False, skip=True
):
    """Each config over ``lags`` (shortest first), skipped (with ``skip``) after a lag it solved in
    no run. With ``sweep``: every rate on the sweep seeds, then the chosen rate on the other seeds."""
    live = list(configs)
    for i, N in enumerate(lags):
        if i and skip:
            dead = [c for c in live if not store.solved_any(c, lags[i - 1])]
            for c in dead:
                for later in lags[i:]:
                    _skip(store, c, later, seeds, lrs_of(c, later))
            live = [c for c in live if c not in dead]
        if sweep:
            _execute(
                store,
                pool,
                [
                    (c, N, s, lr, cfg, max_seconds)
                    for c in live
                    for lr in cfg["lrs"]
                    for s in cfg["sweep_seeds"]
                ],
                bar,
            )
            _execute(
                store,
                pool,
                [
                    (c, N, s, store.chosen_lr(c, N, cfg["sweep_seeds"]), cfg, max_seconds)
                    for c in live
                    for s in cfg["more_seeds"]
                ],
                bar,
            )
        else:
            _execute(
                store,
                pool,
                [
                    (c, N, s, lr, cfg, max_seconds)
                    for c in live
                    for lr in lrs_of(c, N)
                    for s in seeds
                ],
                bar,
            )


def long_configs(store: Store, cfg: dict, configs) -> list[tuple[Config, float]]:
    """Per method, the fair data regime that did best at the last fair lag at its chosen rate
    (most seeds solved, then fewest median steps), if it solved most of them; with that rate,
    relabelled to the ``long`` stage."""
    N = cfg["fair_lags"][-1]
    best = {}
    for c in configs:
        lr = store.chosen_lr(c, N, cfg["sweep_seeds"])
        if lr is None or c.method == "deer":  # DEER is BPTT's gradient at 10x its cost per step
            continue
        rows = store._rows(c, N)
        rows = rows[((rows.lr - lr).abs() < 1e-12) & (rows.stopped_by != "skipped")]
        solved = rows.solved.astype(bool)
        if len(rows) and solved.mean() > 0.5:
            rank = (-solved.mean(), rows[solved].steps.median())
            if c.method not in best or rank < best[c.method][0]:
                best[c.method] = (rank, Config("long", c.task, c.cell, c.method, c.data), lr)
    return [(c, lr) for _, c, lr in best.values()]


def time_step(config: Config, N: int, cfg: dict, threads: int, flush: bool = False) -> float:
    """Median seconds of one optimiser step on ``threads`` threads, alone, after a warm-up step;
    with ``flush``, subnormal floats are flushed to zero (BPTT's gradients through hundreds of
    steps go subnormal, and subnormal arithmetic made its steps up to 4x slower here)."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush)
    try:
        return _time_step(config, N, cfg)
    finally:
        torch.set_flush_denormal(False)


def _time_step(config: Config, N: int, cfg: dict) -> float:
    m = _setup(config, N, 0, 0.01, dict(cfg, val=2, test=2))[1]
    return median_time(m.step, min_reps=cfg["reps"], min_seconds=0.0, max_reps=cfg["reps"])


def time_scan(N: int, cfg: dict, threads: int) -> float:
    """Median seconds of the scan inside one quasi-DEER sweep, called as the sweep calls it:
    ``linear_recurrence`` over (N, batch, n) from a state h0, alone on ``threads`` threads."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    d, u = (
        torch.rand(N, cfg["batch"], N_HIDDEN, generator=g),
        torch.randn(N, cfg["batch"], N_HIDDEN, generator=g),
    )
    h0 = torch.zeros(cfg["batch"], N_HIDDEN)
    return median_time(
        lambda: linear_recurrence(d, u, h0, dim=0),
        min_reps=cfg["reps"],
        min_seconds=0.0,
        max_reps=cfg["reps"],
    )


def timing_jobs(runs: pd.DataFrame) -> list[tuple[Config, int]]:
    """One (config, lag) per recipe, data regime and lag that ran (a hybrid's step also updates
    its whole table, so its cost grows with M)."""
    ran = runs[runs.stopped_by != "skipped"]
    seen, out = set(), []
    for r in ran.itertuples():
        c = Config(
            "time", r.task, r.cell, r.method, r.data, int(r.sweeps), int(r.freeze), float(r.mu)
        )
        if (c, int(r.N)) not in seen:
            seen.add((c, int(r.N)))
            out.append((c, int(r.N)))
    return out


def run(args) -> int:
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from tqdm import tqdm

    from lrbench.options import writable_dir
    from . import round2_report

    cfg = PRESETS[args.preset]
    out = writable_dir(args.out, "--out")
    store = Store(out, args.preset)
    configs = _configs(cfg)
    pool = (
        ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"))
        if args.jobs > 1
        else None
    )
    bar = tqdm(desc=f"seed000 {args.preset}", total=0)
    seeds = cfg["sweep_seeds"] + cfg["more_seeds"]
    every_lr = lambda c, N: cfg["lrs"]
    base_lr = lambda c, N: [0.01]
    stages = set(getattr(args, "stages", STAGES))
    try:
        if "fair" in stages:
            _lagged(
                store,
                pool,
                bar,
                cfg,
                configs["fair"],
                cfg["fair_lags"],
                seeds,
                every_lr,
                cfg["max_seconds"],
                sweep=True,
            )
        for stage, lags in [
            ("ablate", [cfg["ablate_lag"]]),
            ("table", cfg["table_lags"]),
            ("drift", [cfg["drift_lag"]]),
            ("adding", cfg["adding_lags"]),
        ]:
            if stage in stages:
                steps = cfg["adding_max_steps"] if stage == "adding" else cfg["max_steps"]
                _lagged(
                    store,
                    pool,
                    bar,
                    dict(cfg, max_steps=steps),
                    configs[stage],
                    lags,
                    seeds,
                    base_lr,
                    cfg["max_seconds"],
                    skip=stage != "table",
                )
        if "budget" in stages:
            more = dict(cfg, max_steps=BUDGET_FACTOR * cfg["max_steps"])
            _lagged(
                store,
                pool,
                bar,
                more,
                configs["budget"],
                cfg["fair_lags"][1:],
                cfg["sweep_seeds"],
                every_lr,
                BUDGET_FACTOR * cfg["max_seconds"],
            )
        if "edge" in stages:
            _lagged(
                store,
                pool,
                bar,
                cfg,
                configs["edge"],
                cfg["fair_lags"][1:],
                seeds,
                lambda c, N: cfg["edge_lrs"],
                cfg["max_seconds"],
                skip=False,
            )
        if "long" in stages:
            chosen = dict(long_configs(store, cfg, configs["fair"]))
            _lagged(
                store,
                pool,
                bar,
                cfg,
                list(chosen),
                cfg["long_lags"],
                cfg["long_seeds"],
                lambda c, N: [chosen[c]],
                cfg["long_max_seconds"],
            )
    finally:
        if pool:
            pool.shutdown()
        bar.close()
    timing = store.timing
    have = set() if timing.empty else set(zip(timing.task, timing.cell, timing.label, timing.N))
    todo = [(c, N) for c, N in timing_jobs(store.runs) if (c.task, c.cell, c.label, N) not in have]
    for c, N in tqdm(todo if "timing" in stages else [], desc="timing"):
        if c.method == "deer" and N > cfg["fair_lags"][-1]:
            continue
        row = dict(
            task=c.task,
            cell=c.cell,
            label=c.label,
            method=c.method,
            data=c.data,
            N=N,
            ms_1_thread=1e3 * time_step(c, N, cfg, 1),
            **{f"ms_{cfg['threads']}_threads": 1e3 * time_step(c, N, cfg, cfg["threads"])},
            ms_1_thread_flushed=1e3 * time_step(c, N, cfg, 1, flush=True),
            scan_ms_1_thread=1e3 * time_scan(N, cfg, 1)
            if c.method in ("hybrid", "deer")
            else float("nan"),
        )
        timing = pd.concat([timing, pd.DataFrame([row])], ignore_index=True)
        atomic.write_csv(timing, store.paths["timing"])
    torch.set_num_threads(1)
    store.timing = timing
    for path in round2_report.write(store.runs, store.trace, timing, out, args.preset, cfg):
        print("wrote", path)
    return 0
