"""nbgrader's own check of the source edition: `nbgrader validate` runs each lab's instructor edition (with the
nbgrader metadata `labkit release --nbgrader-source` writes) and must find every graded cell passing.

nbgrader is not a labkit dependency (a course that grades with it installs it: `pip install nbgrader`); where it
is missing these tests skip, saying so. Each runs a whole lab at smoke size (20-100 s on a 2-core CPU).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import release

LABS = Path(__file__).resolve().parent.parent / "labs"
NAMES = sorted(p.stem for p in LABS.glob("[0-9][0-9]_*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_nbgrader_validates_the_source_edition(name: str, tmp_path: Path):
    pytest.importorskip("nbgrader", reason="nbgrader is not installed (pip install nbgrader to run this check)")
    source = tmp_path / "course" / "source"
    release.release(LABS, tmp_path / "student", names=[name], nbgrader_source=source)
    notebook = source / name / f"{name}.ipynb"
    assert notebook.is_file()
    env = {**os.environ, "LABKIT_SMOKE": "1", "LABKIT_PROGRESS": "0", "MPLBACKEND": "Agg"}
    exe = shutil.which("nbgrader", path=str(Path(sys.executable).parent)) or "nbgrader"
    done = subprocess.run([exe, "validate", str(notebook), "--timeout=600"], cwd=tmp_path / "course", env=env,
                          capture_output=True, text=True, timeout=1200, check=False)
    report = done.stdout + done.stderr
    assert done.returncode == 0 and "Success! Your notebook passes all the tests." in report, report[-3000:]
