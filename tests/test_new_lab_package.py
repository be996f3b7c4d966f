"""A sixth lab is one new package: nothing else is edited for `labkit` to list it, run it and smoke it.

The package is docs/ARCHITECTURE.md's worked toy lab, written into a `labkit/labs/blobs/` folder outside the
checkout that is put on `PYTHONPATH` (`labkit.labs` extends its path over `sys.path`), so the test edits no
file of the project.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def toy_package(tmp_path_factory) -> Path:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    match = re.search(r"```python\n(# toy lab.*?)```", text, re.DOTALL)
    assert match, "docs/ARCHITECTURE.md lost its worked example"
    base = tmp_path_factory.mktemp("sixth")
    package = base / "labkit" / "labs" / "blobs"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(match.group(1))
    return base


def labkit_cmd(base: Path, *args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(base), str(ROOT)]),
           "LABKIT_RUNS": str(tmp / "runs"), "LABKIT_DATA": str(tmp / "data")}
    return subprocess.run([sys.executable, "-m", "labkit", *args], check=False, capture_output=True, text=True,
                          env=env,
                          cwd=tmp, timeout=300)


def test_a_new_package_is_listed_runs_and_is_smoked(toy_package, tmp_path):
    listed = labkit_cmd(toy_package, "run", "--help", tmp=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "blobs: Lab 06: Gaussian blobs" in " ".join(listed.stdout.split())
    order = [m.group(1) for m in re.finditer(r"([a-z0-9-]+): Lab \d\d", " ".join(listed.stdout.split()))]
    assert order == ["function-fitting", "cifar10", "mnist", "tiny-imagenet", "lm", "blobs"], order

    ran = labkit_cmd(toy_package, "run", "blobs", "--smoke", "--out", str(tmp_path / "run"), tmp=tmp_path)
    assert ran.returncode == 0, ran.stderr
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["lab"] == "blobs" and record["summary"]["test_accuracy"] > 0.6

    helped = labkit_cmd(toy_package, "smoke", "--help", tmp=tmp_path)
    assert "blobs" in helped.stdout, "labkit smoke runs every lab by default: the new one among them"
    smoked = labkit_cmd(toy_package, "smoke", "blobs", "--out", str(tmp_path / "smoke"), tmp=tmp_path)
    assert smoked.returncode == 0, smoked.stderr
    table = json.loads((tmp_path / "smoke" / "metrics.json").read_text())
    assert list(table["labs"]) == ["blobs"] and table["labs"]["blobs"]["test_accuracy"] > 0.6


def test_without_the_package_the_lab_is_unknown(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = labkit_cmd(empty, "run", "blobs", "--smoke", tmp=tmp_path)
    assert result.returncode == 2 and "unknown lab 'blobs'" in result.stderr
