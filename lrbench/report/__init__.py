"""``lrbench report``: charts and tables regenerated from the committed asv results.

Reads ``results/asv/<machine>/*.json`` (asv's own format) with pandas and the paper's numbers
from ``results/paper/*.csv``; writes PNG and SVG under ``results/figures/`` and markdown under
``results/tables/``, each only when its bytes changed (charts are byte-for-byte reproducible). A
missing, stale (benchmark code changed since) or corrupt file is reported in one line and
skipped; everything else still plots. No usable results at all is an error (``NoResults``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..options import Failure
from .asv import load, newest
from .charts import (
    GRID,
    PAIRS,
    bandwidth_chart,
    heatmap,
    history_chart,
    scan_table,
    speedup_chart,
    table1,
    table2,
)
from .draw import Outputs, markdown, save, stamp, write_text
from .kernels import kernels_table, peers_table
from .seqpar import seqpar_chart

__all__ = [
    "run",
    "load",
    "newest",
    "NoResults",
    "markdown",
    "save",
    "write_text",
    "stamp",
    "Outputs",
    "GRID",
    "PAIRS",
]


class NoResults(Failure):
    """The results folder is missing or holds nothing to plot; ``problems`` says what was wrong."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message)
        self.problems = problems


def _paper(path: Path, problems: list[str]) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as e:
        problems.append(f"{path}: the paper's numbers are missing ({e})")
        return pd.DataFrame()


def run(results: str = "results") -> tuple[list[Path], list[str]]:
    """(files written because their content changed, problems); NoResults when ``results`` is not
    a folder or its asv results hold nothing usable."""
    import matplotlib

    matplotlib.use("Agg")
    root = Path(results)
    if not root.is_dir():
        raise NoResults(f"--results {root}: no such folder", [])
    history, problems = load(root / "asv")
    df = newest(history)
    figures, tables = root / "figures", root / "tables"
    try:
        paper1 = pd.read_csv(root / "paper" / "table1.csv")
    except (OSError, ValueError) as e:
        problems.append(f"{root / 'paper' / 'table1.csv'}: the paper's Table 1 is missing ({e})")
        paper1 = pd.DataFrame(columns=["T", "m", "speedup", "source"])
    paper2 = _paper(root / "paper" / "table2.csv", problems)
    paper_hm = _paper(root / "paper" / "heatmap.csv", problems)
    written = Outputs()
    seqpar_chart(root, figures, tables, written, problems)
    if df.empty:
        raise NoResults(f"{root / 'asv'}: no usable results; run `make bench` first", problems)
    for machine, d in df.groupby("machine"):
        speedup_chart(d, machine, figures, written)
        bandwidth_chart(d, machine, figures, tables, written)
        scan_table(d, machine, tables, written)
        if not paper1.empty:
            table1(d, machine, paper1, figures, tables, written)
        if not paper2.empty:
            table2(d, machine, paper2, figures, tables, written)
        heatmap(d, machine, paper_hm, tables, written)
        kernels_table(d, machine, tables, written)
        peers_table(d, machine, tables, written)
    for machine, d in history.groupby("machine"):
        history_chart(d, machine, figures, written)
    for orphan in _orphans(written.made, figures, tables):
        orphan.unlink()
        problems.append(f"{orphan}: removed; no current results draw it any more")
    return written, problems


def _orphans(made: set[Path], *folders: Path) -> list[Path]:
    """Charts and tables in ``folders`` that this run did not draw: drawn from results that are
    gone or stale, they could not be regenerated, so they are not kept beside the rest."""
    return sorted(
        p
        for folder in folders
        if folder.is_dir()
        for p in folder.iterdir()
        if p.suffix in (".png", ".svg", ".md") and p not in made
    )
