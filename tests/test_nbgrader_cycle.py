"""The whole nbgrader cycle a course runs, as the README's instructor section gives it: `labkit release
--nbgrader-source`, `nbgrader generate_assignment`, two submissions collected, `nbgrader autograde` with the
size forced to smoke and a per-cell timeout that holds, then the scores read from nbgrader's gradebook.

The instructor edition, submitted as if a student had written the model answers, must score full marks on
every auto-graded cell; a blank student copy must score 0 there; no cell may time out. nbgrader comes with
the `course` extra (`pip install -e ".[course]"`), which CI installs, so this test runs there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import release

LABS = Path(__file__).resolve().parent.parent / "labs"
LAB = "01_function_fitting"

# What the README tells an instructor to put in course/nbgrader_config.py.
CONFIG = '''c = get_config()
c.CourseDirectory.course_id = "labkit"
c.ClearSolutions.code_stub = {"python": 'raise NotImplementedError("your code here")'}
c.Execute.timeout = 600
'''


def nbgrader(args: list[str], course: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("nbgrader", path=str(Path(sys.executable).parent)) or "nbgrader"
    env = {**os.environ, "LABKIT_SIZE": "smoke", "LABKIT_PROGRESS": "0", "MPLBACKEND": "Agg",
           # nbgrader runs `alembic` by name: the environment's bin folder on PATH, as an activated venv has it
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    env.pop("LABKIT_SMOKE", None)  # the size is forced by LABKIT_SIZE alone, as the README says
    done = subprocess.run([exe, *args], cwd=course, env=env, capture_output=True, text=True, timeout=1200,
                          check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


@pytest.mark.slow
def test_generate_autograde_scores_the_model_answers_full_and_a_blank_copy_zero(tmp_path: Path):
    pytest.importorskip("nbgrader", reason="nbgrader is not installed: pip install -e '.[course]'")
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    release.release(LABS, tmp_path / "student", names=[LAB], nbgrader_source=course / "source")
    (course / "nbgrader_config.py").write_text(CONFIG)
    nbgrader(["generate_assignment", LAB, "--create"], course)
    released = course / "release" / LAB / f"{LAB}.ipynb"
    assert "your code here" in released.read_text(), "the released copy has its solutions replaced by stubs"

    for student, notebook in (("model", course / "source" / LAB / f"{LAB}.ipynb"), ("blank", released)):
        folder = course / "submitted" / student / LAB
        folder.mkdir(parents=True)
        shutil.copy(notebook, folder / f"{LAB}.ipynb")
    nbgrader(["autograde", LAB, "--create"], course)

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {}
        for student in ("model", "blank"):
            nb = gradebook.find_submission_notebook(LAB, LAB, student)
            auto = [g for g in nb.grades if g.cell.cell_type == "code"]
            assert auto, "the lab has auto-graded cells"
            scores[student] = {g.name: (g.auto_score, g.max_score) for g in auto}
    assert all(score == top for score, top in scores["model"].values()), scores["model"]
    assert all(score == 0 for score, _ in scores["blank"].values()), scores["blank"]

    for student in ("model", "blank"):
        graded = json.loads((course / "autograded" / student / LAB / f"{LAB}.ipynb").read_text())
        errors = [out.get("ename", "") for cell in graded["cells"] for out in cell.get("outputs", [])
                  if out.get("output_type") == "error"]
        assert not [e for e in errors if "Timeout" in e], f"{student}: a cell timed out: {errors}"
        if student == "model":
            assert not errors, f"the model answers raise: {errors}"
        else:
            assert "NotImplementedError" in errors, "the blank copy fails at its exercise stubs"
