"""Atomic file writes: write a temporary file beside the target, flush it to disk, rename it over
the target. A run killed at any moment leaves the old file or the new one, never half of one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write(path, fill) -> Path:
    """Call ``fill(f)`` on a binary file that becomes ``path`` atomically; creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def write_text(path, text: str) -> Path:
    return write(path, lambda f: f.write(text.encode()))


def write_csv(df, path) -> Path:
    return write(path, lambda f: df.to_csv(f, index=False))
