"""Command-line conventions shared by every sub-command: option types that carry their range
(argparse rejects a bad value in one line, with usage and exit status 2, before any work starts),
a help formatter that prints each option's range and default, the error a user can act on, and a
check that an output folder can be written before the work that fills it."""

from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
from pathlib import Path


class Failure(Exception):
    """A run-time error the user can act on: the command prints it as one line and exits 1."""


class Number:
    """An argparse ``type``: ``int`` or a finite ``float`` with optional bounds.

    ``Number(int, min=1)`` accepts 1, 2, ...; ``Number(float, above=0)`` accepts finite x > 0;
    ``max`` is an upper bound (what the code behind the option can take).
    ``describe()`` is shown in the help; ``bad_values()`` are what the CLI fuzz test feeds.
    """

    def __init__(
        self,
        kind: type,
        *,
        min: float | None = None,
        above: float | None = None,
        max: float | None = None,
    ):
        self.kind, self.min, self.above, self.max = kind, min, above, max
        self.__name__ = "integer" if kind is int else "number"  # argparse names the type

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if self.kind is int else 'a number'}, got {text!r}"
            ) from None
        if self.kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if (
            (self.min is not None and value < self.min)
            or (self.above is not None and value <= self.above)
            or (self.max is not None and value > self.max)
        ):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        return value

    def _show(self, bound: float) -> str:
        return str(bound) if self.kind is int else f"{bound:g}"

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        if self.min is not None:
            what += f" >= {self._show(self.min)}"
        elif self.above is not None:
            what += f" > {self._show(self.above)}"
        if self.max is not None:
            joint = " and" if self.min is not None or self.above is not None else ""
            what += f"{joint} <= {self._show(self.max)}"
        return what

    def bad_values(self) -> list[str]:
        bad = ["x", "1.5e"] if self.kind is int else ["x", "nan", "inf", "-inf"]
        if self.min is not None:
            bad.append(str(self.kind(self.min - 1)))
        if self.above is not None:
            bad += [str(self.kind(self.above)), str(self.kind(self.above - 1))]
        if self.max is not None:
            above = self.max + 1 if self.kind is int else self.max + abs(self.max) + 1.0
            bad.append(str(above))
        return bad


POSITIVE_INT = Number(int, min=1)
NONNEGATIVE_INT = Number(int, min=0)
POSITIVE = Number(float, above=0)
FINITE = Number(float)


def device(text: str) -> str:
    """An argparse ``type``: a torch device that exists here (cpu, cuda, cuda:<index>)."""
    import torch

    try:
        d = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"not a device: {text!r} (use cpu, cuda or cuda:<index>)"
        ) from None
    if d.type == "cpu":
        return text
    if d.type != "cuda":
        raise argparse.ArgumentTypeError(f"{text!r}: only cpu and cuda devices are supported")
    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine")
    if d.index is not None and d.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return text


def cuda_arch(text: str) -> str:
    """An argparse ``type``: a GPU architecture such as sm_90."""
    if not re.fullmatch(r"sm_\d{2,3}a?", text):
        raise argparse.ArgumentTypeError(f"expected an architecture such as sm_90, got {text!r}")
    return text


class HelpFormatter(argparse.HelpFormatter):
    """Each option's help, then its range (from its ``Number`` type), then its default (an
    option without one says in its help what leaving it out means)."""

    def _get_help_string(self, action):
        help = action.help or ""
        describe = getattr(action.type, "describe", None)
        if describe is not None:
            help += f"; {describe()}"
        default = action.default
        if (
            default not in (None, argparse.SUPPRESS)
            and action.option_strings
            and action.nargs != 0
            and "%(default)" not in help
        ):
            shown = (
                " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
            )
            help += f" (default: {shown.replace('%', '%%')})"
        return help


def parser(prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command's stand-alone parser (the ``lrbench`` command builds its own with the same formatter)."""
    return argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=HelpFormatter
    )


def writable_dir(path, option: str) -> Path:
    """Create folder ``path`` if needed and check that a file can be written in it, before any work;
    a ``Failure`` naming ``option`` and the path otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".lrbench-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise Failure(f"{option} {path}: cannot write there ({e.strerror or e})") from None
    return path
