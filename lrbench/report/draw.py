"""What every chart and table of lrbench is drawn with: reproducible saving (the same data give the
same bytes; a file is written only when its bytes change), the stamp saying where numbers come
from (machine, commit, date), log axes with plain labels, and markdown tables."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .. import atomic

# Fixed SVG ids (matplotlib hashes them with this salt) and no creation date: the same data draw
# the same bytes, so regenerating an unchanged chart leaves the file alone.
REPRODUCIBLE = {"svg.hashsalt": "lrbench"}


class Outputs(list):
    """The files a report run wrote because their bytes changed; ``made`` holds every file it
    drew, changed or not, so the rest of the output folders can be recognised as orphans."""

    def __init__(self):
        super().__init__()
        self.made: set[Path] = set()


def stamp(rows: pd.DataFrame, machine: str) -> str:
    """Where a figure's numbers come from: machine, commit(s) and UTC date(s) of ``rows``."""
    import datetime

    commits = rows.sort_values("date").drop_duplicates("commit")
    day = lambda ms: datetime.datetime.fromtimestamp(ms / 1e3, datetime.timezone.utc).strftime(
        "%Y-%m-%d"
    )
    first, last = commits.iloc[0], commits.iloc[-1]
    if len(commits) == 1:
        return f"measured on {machine} at commit {last.commit}, {day(last.date)}"
    return (
        f"measured on {machine} at {len(commits)} commits, {first.commit} ({day(first.date)}) "
        f"to {last.commit} ({day(last.date)})"
    )


def _record(path: Path, written: list[Path]) -> None:
    made = getattr(written, "made", None)
    if made is not None:
        made.add(path)


def save(fig, out: Path, stem: str, written: list[Path], exts=("png", "svg"), source: str = ""):
    """Render ``fig`` as each format and write the files whose bytes changed (listed in
    ``written``). ``source`` (see ``stamp``) goes under the picture and into its metadata (PNG
    text chunks, SVG description)."""
    import io

    import matplotlib

    if source:
        fig.text(0.5, -0.01, source, ha="center", va="top", fontsize=8, color="dimgrey")
    for ext in exts:
        path, buf = out / f"{stem}.{ext}", io.BytesIO()
        meta = {"Date": None} if ext == "svg" else {}
        if source:
            meta |= {"Title": stem, "Source": "lrbench report", "Description": source}
        with matplotlib.rc_context(REPRODUCIBLE):
            fig.savefig(buf, format=ext, dpi=120, bbox_inches="tight", metadata=meta)
        _record(path, written)
        if atomic.write_if_changed(path, buf.getvalue()):
            written.append(path)


def markdown(df: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs tabulate, which lrbench does not pull in)."""
    df = df.reset_index()
    cols = [" ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in df.columns]
    cell = (
        lambda v: ""
        if isinstance(v, float) and math.isnan(v)
        else f"{v:g}"
        if isinstance(v, float)
        else str(v)
    )
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def write_text(path: Path, text: str, written: list[Path]):
    _record(path, written)
    if atomic.write_if_changed(path, text.encode()):
        written.append(path)


def times_axis(ax, label_one: str = "above: parallel faster") -> None:
    """Log axes with plain tick labels (0.5x, 2x, not 5x10^-1) and the y = 1 line labelled."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    if label_one:
        ax.annotate(
            label_one,
            xy=(0.01, 1.0),
            xycoords=("axes fraction", "data"),
            xytext=(0, 3),
            textcoords="offset points",
            fontsize=8,
            color="dimgrey",
        )


def powers_of_two(ax, values) -> None:
    values = sorted({int(v) for v in values})
    ax.set_xticks(
        values, [f"2^{int(math.log2(v))}" if v & (v - 1) == 0 else str(v) for v in values]
    )
    ax.minorticks_off()
