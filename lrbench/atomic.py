"""Atomic file writes: write a temporary file beside the target, flush it to disk, rename it over
the target. A run killed at any moment leaves the old file or the new one, never half of one. The
file gets the mode a new file gets (0666 less the umask: 0644 under umask 022), not the private
0600 of a temporary file, and an error writing it names the target."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path


def umask() -> int:
    """This process's umask, read from /proc where it can be (setting it to read it, the only
    portable way, would change it for a moment for every thread)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write(path, fill) -> Path:
    """Call ``fill(f)`` on a binary file that becomes ``path`` atomically; creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~umask())
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # e.g. a full disk: say which file
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    return path


def write_text(path, text: str) -> Path:
    return write(path, lambda f: f.write(text.encode()))


def write_csv(df, path) -> Path:
    return write(path, lambda f: df.to_csv(f, index=False))


def write_if_changed(path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless the file already holds exactly these bytes
    (so regenerating an unchanged chart leaves the file, its date and git alone); True if written."""
    path = Path(path)
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    write(path, lambda f: f.write(data))
    return True


def remove_stale(folder, name: str) -> None:
    """Remove the temporary files ``write`` left beside ``folder/name`` when a run was killed mid-write."""
    for tmp in Path(folder).glob(f".{name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def strict(obj):
    """``obj`` made strict JSON (RFC 8259 has no NaN or Infinity): every non-finite float becomes
    null, and a top-level dict gains ``"nonfinite": {key path: "nan" | "inf" | "-inf"}`` saying so."""
    notes: dict[str, str] = {}

    def clean(v, where):
        if isinstance(v, float) and not math.isfinite(v):
            notes[where] = repr(v)
            return None
        if isinstance(v, dict):
            return {k: clean(x, f"{where}.{k}" if where else str(k)) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x, f"{where}[{i}]") for i, x in enumerate(v)]
        return v

    out = clean(obj, "")
    if notes and isinstance(out, dict):
        out["nonfinite"] = notes
    return out


def dumps(obj, **kw) -> str:
    """``json.dumps`` of ``strict(obj)``; raises rather than ever writing NaN or Infinity."""
    return json.dumps(strict(obj), allow_nan=False, **kw)


def write_json(path, obj, **kw) -> Path:
    return write_text(path, dumps(obj, **kw) + "\n")
