"""Every ```python block of the README and docs/ runs as pasted, each in a fresh interpreter (a block
headed ``# torchrun --nproc-per-node K ...`` under torchrun with K ranks); the README stays a front
door (at most 250 lines); ``import lrbench`` and ``lrbench --help`` do not import torch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks():
    for doc in DOCS:
        for i, m in enumerate(BLOCK.finditer(doc.read_text())):
            line = doc.read_text()[: m.start()].count("\n") + 1
            yield pytest.param(m.group(1), id=f"{doc.relative_to(ROOT)}:{line}")


def test_blocks_are_found():
    """The extractor finds the README's blocks (a broken pattern would make the test below vacuous)."""
    assert sum(1 for p in blocks() if p.id.startswith("README.md")) >= 2


@pytest.mark.parametrize("code", blocks())
def test_python_block_runs_as_pasted(code, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(code)
    ranks = re.match(r"# torchrun --nproc-per-node (\d+)", code)
    if ranks:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            ranks.group(1),
            str(script),
        ]
    else:
        cmd = [sys.executable, str(script)]
    out = subprocess.run(
        cmd,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]


def test_a_failing_block_is_caught(tmp_path):
    """The runner reports a block that raises (here, the README's first example before lrbench
    loaded its submodules lazily: lrbench.models was an AttributeError)."""
    with pytest.raises(AssertionError):
        test_python_block_runs_as_pasted("import lrbench\nlrbench.no_such_thing\n", tmp_path)


def test_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert text.startswith("# lrbench\n\nlrbench is ")
    assert "make bench" in text.split("## ")[0] and "make test" in text.split("## ")[0]
    assert (ROOT / "LICENSE").exists() and (ROOT / "CITATION.cff").exists()


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys\nfrom lrbench import cli\n"
        "for argv in (['--help'], ['--version'], ['report', '--help']):\n"
        "    try:\n        cli.main(argv)\n    except SystemExit:\n        pass\n"
        "import lrbench\nassert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
