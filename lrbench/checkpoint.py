"""Training checkpoints that check themselves and cannot run code.

A checkpoint file is one header line, ``lrbench-checkpoint 1 sha256:<hex>``, then the bytes of
``torch.save(state)``; the hash covers those bytes. Loading verifies the hash (a corrupt, empty or
truncated file is named, never half-read) and unpickles with ``weights_only=True``, so a state may
hold tensors and plain values only (RNG states are uint8 tensors) and a file carrying a pickled
callable is refused before anything in it runs. Bytes that pass the hash but are no ``torch.save``
archive, or do not unpickle, are reported as damaged; a caller's ``check`` can reject a state of
the wrong shape the same way.

``save`` keeps the newest good checkpoint as ``checkpoint.prev.pt`` before atomically replacing
``checkpoint.pt`` (through temporary names of its own, so two savers cannot take each other's), and
``load_newest`` falls back to it: a damaged newest file costs one interval.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from . import atomic

NAME, PREVIOUS = "checkpoint.pt", "checkpoint.prev.pt"
HEADER = b"lrbench-checkpoint 1 sha256:"
ZIP = b"PK\x03\x04"  # what every torch.save archive begins with
# Unpickling errors that mean "an object other than tensors and plain values", not damage: the
# unpickler's own words, and the opcodes that find or build an object (STACK_GLOBAL, INST, OBJ,
# NEWOBJ_EX, EXT1/2/4) when it does not support them at all.
CODE_WORDS = ("GLOBAL", "reduce for", "new object", "Can only build")
CODE_OPCODES = {147, 105, 111, 146, 130, 131, 132}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file and why."""


def dumps(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    return HEADER + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def _payload(path: Path) -> bytes:
    """The verified ``torch.save`` bytes of ``path``; CheckpointError when missing or damaged."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not data:
        raise CheckpointError(f"{path}: empty (0 bytes)")
    head, newline, payload = data.partition(b"\n")
    if not head.startswith(HEADER) or not newline:
        raise CheckpointError(
            f"{path}: not an lrbench checkpoint (no '{HEADER[:18].decode()}' header; "
            f"written by another program or an older lrbench)"
        )
    if hashlib.sha256(payload).hexdigest().encode() != head[len(HEADER) :]:
        raise CheckpointError(
            f"{path}: corrupt or truncated (SHA-256 does not match; {len(data)} bytes)"
        )
    return payload


def _unpickling_problem(e: pickle.UnpicklingError) -> tuple[bool, str]:
    """(could it run code, the unpickler's reason in one line) of a ``weights_only`` refusal."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    after = next((i + 1 for i, line in enumerate(lines) if "WeightsUnpickler error" in line), 0)
    why = lines[after] if after < len(lines) else (lines[0] if lines else type(e).__name__)
    code = next((line for line in lines if any(w in line for w in CODE_WORDS)), None)
    if code is not None:
        return True, code
    opcode = why.split()[-1] if why.startswith("Unsupported operand") else ""
    if opcode.isdigit() and int(opcode) in CODE_OPCODES:
        return True, f"{why}, an opcode that builds objects"
    return False, why


def load(path, map_location=None, check: Callable[[dict], str | None] | None = None) -> dict:
    """The state saved in ``path``, verified and loaded with ``weights_only=True``; ``check(state)``
    says why a state is not what the caller needs (None: it is), which makes the file damaged."""
    path = Path(path)
    payload = _payload(path)
    if not payload.startswith(ZIP):
        raise CheckpointError(
            f"{path}: damaged: not a torch.save archive (its SHA-256 matches: it "
            f"was written so, by another program or a faulty one)"
        )
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        code, why = _unpickling_problem(e)
        if code:
            raise CheckpointError(
                f"{path}: refused: it holds more than tensors and plain values, "
                f"which could run code when loaded ({why})"
            ) from None
        raise CheckpointError(f"{path}: damaged: its contents do not unpickle ({why})") from None
    except (
        RuntimeError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
    ) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: unreadable ({why})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a checkpoint's dict")
    why = check(state) if check is not None else None
    if why:
        raise CheckpointError(f"{path}: damaged ({why})")
    return state


def is_good(path: Path) -> bool:
    try:
        _payload(path)
    except CheckpointError:
        return False
    return True


def save(folder, state: dict) -> Path:
    """Write ``folder/checkpoint.pt`` atomically; the one it replaces, if good, becomes
    ``checkpoint.prev.pt`` first (a hard link, under a name no other saver uses, renamed into
    place, so at every moment ``checkpoint.pt`` holds the old state or the new one)."""
    folder = Path(folder)
    data = dumps(state)
    current, previous = folder / NAME, folder / PREVIOUS
    if is_good(current):
        # a name of its own (that atomic.remove_stale knows): another saver's is never touched
        keep = folder / f".{PREVIOUS}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            try:
                os.link(current, keep)
            except OSError:  # a file system without hard links
                atomic.write(keep, lambda f: f.write(current.read_bytes()))
            os.replace(keep, previous)
        finally:
            keep.unlink(missing_ok=True)  # rename(2) leaves it when both name one file already
    return atomic.write(current, lambda f: f.write(data))


def _each(folder: Path, map_location, check) -> Iterator[tuple[dict | None, Path, str | None]]:
    """(state, path, None) or (None, path, why it cannot be used) of the newest checkpoint, then
    of the previous one, each loaded when asked for."""
    for path in (folder / NAME, folder / PREVIOUS):
        try:
            yield load(path, map_location, check), path, None
        except CheckpointError as e:
            yield None, path, str(e)


def load_newest(folder, map_location=None, check=None) -> tuple[dict, Path, list[str]]:
    """The newest usable checkpoint in ``folder``: (state, its path, why newer ones were skipped).
    CheckpointError naming every file tried when none is usable. ``check`` as for ``load``."""
    folder = Path(folder)
    problems = []
    for state, path, why in _each(folder, map_location, check):
        if state is not None:
            return state, path, problems
        problems.append(why)
    raise CheckpointError(f"no usable checkpoint in {folder}: " + "; ".join(problems))


def load_all(folder, map_location=None, check=None) -> tuple[list[tuple[dict, Path]], list[str]]:
    """Every usable checkpoint in ``folder``, newest first, as (state, path), and why each other
    one cannot be used. ``check`` as for ``load``."""
    found, problems = [], []
    for state, path, why in _each(Path(folder), map_location, check):
        if state is None:
            problems.append(why)
        else:
            found.append((state, path))
    return found, problems
