"""The stamp every result carries: machine, devices, library versions, git commit."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return (
            out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def available_memory() -> int | None:
    """Bytes of memory available to a new process (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def info() -> dict:
    import numba
    import numpy
    import torch

    d = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "commit": _git_commit(),
        "gpu": "none",
        "driver": "none",
    }
    if torch.cuda.is_available():
        d["gpu"] = torch.cuda.get_device_name()
        d["cuda"] = torch.version.cuda
        try:
            d["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return d


def name() -> str:
    """A stable machine name for asv results: GPU model if any, else CPU model and core count
    (hostnames change between CI runs)."""
    import re

    import torch

    if torch.cuda.is_available():
        label = torch.cuda.get_device_name()
    else:
        label = f"{_cpu_model()}-{os.cpu_count()}c"
    label = re.sub(r"\(R\)|\(TM\)|CPU|Processor|NVIDIA|\d+-Core", "", label)
    return re.sub(r"[^A-Za-z0-9.]+", "-", label).strip("-").lower()
