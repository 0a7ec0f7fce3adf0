"""A wheel built from this tree, installed into a folder outside the checkout, runs a scan, `lrbench
kernels` (its CUDA sources are package data) and `lrbench perfcheck --help`; it holds no experiment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "lrbench",
        src / "lrbench",
        ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"),
    )
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    wheel = next((tmp / "dist").glob("lrbench-*.whl"))
    site = tmp / "site"
    zipfile.ZipFile(wheel).extractall(site)
    return wheel, site, tmp / "elsewhere"


def _run(site: Path, cwd: Path, *args) -> subprocess.CompletedProcess:
    cwd.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_wheel_ships_kernels_and_thresholds_and_no_experiments(installed):
    wheel, _, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    for want in (
        "lrbench/scan/cuda/scan.cu",
        "lrbench/scan/cuda/serial.cu",
        "lrbench/scan/cuda/paper.cu",
        "lrbench/scan/cuda/common.cuh",
        "lrbench/perf_thresholds.json",
        "lrbench/auto_cpu.json",
    ):
        assert want in names, want
    assert not any(n.startswith(("experiments/", "tests/", "benchmarks/")) for n in names)


def test_an_installed_wheel_runs_from_outside_the_checkout(installed):
    _, site, elsewhere = installed
    scan = _run(
        site,
        elsewhere,
        "-c",
        "import torch, lrbench; a, x = torch.rand(99, 3), "
        "torch.randn(99, 3); h = lrbench.linear_recurrence(a, x); "
        "r = lrbench.linear_recurrence(a, x, backend='reference'); "
        "assert torch.allclose(h, r, atol=1e-5); print(lrbench.__file__)",
    )
    assert scan.returncode == 0, scan.stderr[-2000:]
    assert scan.stdout.strip().startswith(str(site))
    helped = _run(site, elsewhere, "-m", "lrbench", "perfcheck", "--help")
    assert helped.returncode == 0 and "--thresholds" in helped.stdout, helped.stderr
    experiment = _run(site, elsewhere, "-m", "lrbench", "seed000", "--help")
    assert experiment.returncode == 1 and "runs from a checkout" in experiment.stderr


def test_an_installed_wheel_compiles_its_kernels(installed):
    pytest.importorskip("cuda.bindings")
    _, site, elsewhere = installed
    paths = [p for p in sys.path if "site-packages" in p]  # NVRTC's wheels live there
    env_site = os.pathsep.join([str(site), *paths])
    done = subprocess.run(
        [sys.executable, "-m", "lrbench", "kernels", "--arch", "sm_90"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": os.environ["PATH"], "HOME": str(elsewhere), "PYTHONPATH": env_site},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "scan_forward" in done.stdout or "serial" in done.stdout, done.stdout


def test_an_installed_wheel_finds_its_own_thresholds(installed):
    """perfcheck's thresholds come from the installed package, not from a checkout beside it."""
    _, site, elsewhere = installed
    code = (
        "import json, lrbench.perfcheck as p; print(json.dumps([p.__file__, str(p.THRESHOLDS), "
        "sorted(p.load()['machines'])]))"
    )
    done = _run(site, elsewhere, "-c", code)
    assert done.returncode == 0, done.stderr
    module, path, machines = json.loads(done.stdout)
    assert Path(module).parent == Path(path).parent == site / "lrbench", (module, path)
    assert "benchmarks" not in path and "intel-xeon-2c" in machines
