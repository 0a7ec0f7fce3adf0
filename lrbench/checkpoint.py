"""Training checkpoints that check themselves and cannot run code.

A checkpoint file is one header line, ``lrbench-checkpoint 1 sha256:<hex>``, then the bytes of
``torch.save(state)``; the hash covers those bytes. Loading verifies the hash (a corrupt, empty or
truncated file is named, never half-read) and unpickles with ``weights_only=True``, so a state may
hold tensors and plain values only (RNG states are uint8 tensors) and a file carrying a pickled
callable is refused before anything in it runs.

``save`` keeps the newest good checkpoint as ``checkpoint.prev.pt`` before atomically replacing
``checkpoint.pt``, and ``load_newest`` falls back to it: a damaged newest file costs one interval.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path

import torch

from . import atomic

NAME, PREVIOUS = "checkpoint.pt", "checkpoint.prev.pt"
HEADER = b"lrbench-checkpoint 1 sha256:"


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
        raise CheckpointError(f"{path}: not an lrbench checkpoint (no '{HEADER[:18].decode()}' header; "
                              f"written by another program or an older lrbench)")
    if hashlib.sha256(payload).hexdigest().encode() != head[len(HEADER):]:
        raise CheckpointError(f"{path}: corrupt or truncated (SHA-256 does not match; {len(data)} bytes)")
    return payload


def load(path, map_location=None) -> dict:
    """The state saved in ``path``, verified and loaded with ``weights_only=True``."""
    path = Path(path)
    payload = _payload(path)
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        why = next((line for line in str(e).splitlines() if "GLOBAL" in line), "an object of unknown type")
        raise CheckpointError(f"{path}: refused: it holds more than tensors and plain values, which "
                              f"could run code when loaded ({why.strip()})") from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a checkpoint's dict")
    return state


def is_good(path: Path) -> bool:
    try:
        _payload(path)
    except CheckpointError:
        return False
    return True


def save(folder, state: dict) -> Path:
    """Write ``folder/checkpoint.pt`` atomically; the one it replaces, if good, becomes
    ``checkpoint.prev.pt`` first (a hard link renamed into place, so at every moment
    ``checkpoint.pt`` holds the old state or the new one)."""
    folder = Path(folder)
    data = dumps(state)
    current, previous = folder / NAME, folder / PREVIOUS
    if is_good(current):
        keep = folder / f".{PREVIOUS}.link"
        keep.unlink(missing_ok=True)
        try:
            os.link(current, keep)
        except OSError:                               # a file system without hard links
            atomic.write(keep, lambda f: f.write(current.read_bytes()))
        os.replace(keep, previous)
    return atomic.write(current, lambda f: f.write(data))


def load_newest(folder, map_location=None) -> tuple[dict, Path, list[str]]:
    """The newest usable checkpoint in ``folder``: (state, its path, why newer ones were skipped).
    CheckpointError naming every file tried when none is usable."""
    folder = Path(folder)
    problems = []
    for path in (folder / NAME, folder / PREVIOUS):
        try:
            return load(path, map_location), path, problems
        except CheckpointError as e:
            problems.append(str(e))
    raise CheckpointError(f"no usable checkpoint in {folder}: " + "; ".join(problems))
