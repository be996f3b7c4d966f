"""Instructor and student editions of the labs.

The instructor edition (labs/*.ipynb) is run top to bottom by nbval. Here, for every lab
in labs/: the paired .py and .ipynb hold the same cells (tags included), every exercise is
followed by a check, the student edition differs only inside the solution regions, and it
runs up to its first exercise and fails there, with NotImplementedError("your code here").
The `labkit release` machinery itself is tested on a small notebook written here.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import ipykernel.kernelspec
import jupytext
import nbformat
import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from labkit import cli, release
from labkit.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
LABS = sorted(p for p in (REPO / "labs").glob("*.py") if not p.name.startswith("_")) or [
    pytest.param(None, marks=pytest.mark.skip(reason="no lab sources labs/*.py in this checkout"))]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --- helpers -----------------------------------------------------------------------------------

class _CurrentEnvKernelSpecs(KernelSpecManager):
    """Every kernel name means the Python running the tests (as nbval's --nbval-current-env)."""

    def get_kernel_spec(self, kernel_name):
        return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                      **ipykernel.kernelspec.get_kernel_dict())


def execute(path: Path, timeout: int = 300) -> tuple[nbformat.NotebookNode, CellExecutionError | None]:
    """Run a notebook in a fresh kernel of this environment (cwd: its folder); stop at the first error.

    The kernel gets one torch/OpenMP thread: this checks control flow at smoke size, and on a busy
    2-core machine the default thread per core spin-waits and runs tiny models 10x slower.
    """
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=_CurrentEnvKernelSpecs())
    client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=False,
                            resources={"metadata": {"path": str(path.parent)}})
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    try:
        client.execute(env=env)
    except CellExecutionError as err:
        return nb, err
    return nb, None


def failed_cell(nb: nbformat.NotebookNode) -> int | None:
    """Index of the first code cell with an error output."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(o.output_type == "error" for o in cell.outputs):
            return index
    return None


def cell_summary(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str], dict]]:
    """What must agree between paired files: type, source, tags and nbgrader metadata of each cell."""
    return [(c.cell_type, c.source, list(c.metadata.get("tags", [])), dict(c.metadata.get("nbgrader", {})))
            for c in nb.cells]


def exercise_indices(nb: nbformat.NotebookNode) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if release.is_exercise(c)]


def code_exercise_indices(nb: nbformat.NotebookNode) -> list[int]:
    """Code exercises only: a written (markdown) answer stub does not stop a run."""
    return [i for i in exercise_indices(nb) if nb.cells[i].cell_type == "code"]


def _lab_id(path: Path | None) -> str:
    return path.stem if path else "none"


# --- the editions of every lab in labs/ ----------------------------------------------------------

@pytest.mark.parametrize("lab", LABS, ids=_lab_id)
def test_lab_py_and_ipynb_hold_the_same_cells(lab: Path):
    """The percent source and its paired notebook agree cell by cell, tags included (jupytext --sync)."""
    ipynb = lab.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run `jupytext --sync {lab.relative_to(REPO)}`"
    from_py, from_ipynb = jupytext.read(lab), jupytext.read(ipynb)
    assert cell_summary(from_py) == cell_summary(from_ipynb), (
        f"{lab.name} and {ipynb.name} differ: run `jupytext --sync {lab.relative_to(REPO)}` and commit both")
    nbformat.validate(nbformat.read(ipynb, as_version=4))
    stored = [i for i, c in enumerate(from_ipynb.cells) if c.cell_type == "code" and c.get("outputs")]
    assert not stored, f"{ipynb.name} has stored outputs in cells {stored}: clear them before committing"


@pytest.mark.parametrize("lab", LABS, ids=_lab_id)
def test_lab_notebook_names_its_kernel(lab: Path):
    """Without metadata.kernelspec JupyterLab greets the student with a "Select Kernel" dialog."""
    kernelspec = nbformat.read(lab.with_suffix(".ipynb"), as_version=4).metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3", (
        f"{lab.with_suffix('.ipynb').name} names no python3 kernel: run "
        f"`jupytext --set-kernel python3 {lab.with_suffix('.ipynb').relative_to(REPO)}`")


@pytest.mark.parametrize("lab", LABS, ids=_lab_id)
def test_lab_exercises_follow_the_convention(lab: Path):
    """At least one exercise; each code exercise is followed by a cell calling a labkit.check helper."""
    nb = release.read_lab(release.Lab(lab))
    exercises = exercise_indices(nb)
    assert exercises, f"{lab.name} has no cell tagged 'exercise' (a \"Your turn\" cell with a solution region)"
    release.mark_exercises(nb, lab.stem)  # raises UsageError on misplaced or missing markers
    for n, start in enumerate(exercises):
        if nb.cells[start].cell_type != "code":
            continue
        end = exercises[n + 1] if n + 1 < len(exercises) else len(nb.cells)
        assert any(release.is_check(c) for c in nb.cells[start + 1:end]), (
            f"{lab.name}: the exercise in cell {start + 1} is not followed by a check cell calling labkit.check")


@pytest.mark.parametrize("lab", LABS, ids=_lab_id)
def test_student_edition_differs_only_inside_solutions(lab: Path, tmp_path: Path):
    written = release.release(lab.parent, tmp_path, names=[lab.stem])
    assert sorted(p.name for p in written) == [f"{lab.stem}.ipynb", f"{lab.stem}.py"]
    instructor = release.read_lab(release.Lab(lab))
    student = nbformat.read(tmp_path / f"{lab.stem}.ipynb", as_version=4)
    nbformat.validate(student)
    assert len(student.cells) == len(instructor.cells)
    for index, (mine, theirs) in enumerate(zip(student.cells, instructor.cells)):
        assert (mine.cell_type, mine.get("id"), mine.metadata.get("tags")) == (
            theirs.cell_type, theirs.get("id"), theirs.metadata.get("tags")), f"cell {index}"
        if release.is_exercise(theirs):
            stub = release.CODE_STUB if theirs.cell_type == "code" else release.ANSWER_STUB
            assert mine.source == release.strip_solutions(theirs.source, stub)
            assert release.BEGIN_SOLUTION not in mine.source and mine.source != theirs.source
            assert mine.metadata["nbgrader"]["solution"] is True
        else:
            assert mine.source == theirs.source, f"cell {index} changed in the student edition"
        if mine.cell_type == "code":
            assert mine.outputs == [] and mine.execution_count is None
    # The student .py is the same notebook: a jupytext round trip keeps sources, tags and nbgrader metadata.
    assert cell_summary(jupytext.read(tmp_path / f"{lab.stem}.py")) == cell_summary(student)


@pytest.mark.parametrize("lab", LABS, ids=_lab_id)
def test_student_edition_fails_first_at_its_first_exercise(lab: Path, tmp_path: Path):
    """Every cell before the first exercise runs; the first error is the exercise's NotImplementedError."""
    release.release(lab.parent, tmp_path, names=[lab.stem])
    nb, error = execute(tmp_path / f"{lab.stem}.ipynb")
    first = code_exercise_indices(nb)[0]
    assert error is not None, f"the student edition of {lab.name} ran to the end without its solutions"
    assert error.ename == "NotImplementedError" and error.evalue == "your code here", (
        f"the student edition of {lab.name} failed with {error.ename}: {error.evalue} instead of the exercise stub")
    where = failed_cell(nb)
    code_before = [i for i, c in enumerate(nb.cells[:first]) if c.cell_type == "code"]
    assert all(nb.cells[i].execution_count for i in code_before), "cells before the first exercise did not run"
    # The failing cell is the exercise itself, or (when the exercise defines a function) the cell that calls it.
    next_exercise = ([i for i in code_exercise_indices(nb) if i > first] + [len(nb.cells)])[0]
    assert first <= where < next_exercise, (
        f"{lab.name}: first error in cell {where + 1}, expected the exercise in cell {first + 1} or its check")
    traceback = _ANSI.sub("", "\n".join(nb.cells[where].outputs[-1].traceback))
    assert f"Cell In[{nb.cells[first].execution_count}]" in traceback, (
        f"{lab.name}: the NotImplementedError is not raised by the exercise cell's code:\n{traceback}")


# --- the release machinery on a small notebook -------------------------------------------------

DEMO = '''\
# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,nbgrader,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% [markdown]
# # Demo lab

# %%
import torch
x = torch.linspace(-2, 2, 9)
print("setup ran")


def check_close(value, expected, what):
    assert torch.allclose(torch.as_tensor(value), torch.as_tensor(expected)), f"{what} is wrong"

# %% [markdown]
# ## Your turn: write f

# %% tags=["exercise"]
def f(x):
    """x squared."""
    ### BEGIN SOLUTION
    y = x * x
    return y
    ### END SOLUTION

# %%
check_close(f(x), x**2, what="f")

# %% tags=["exercise"]
### BEGIN SOLUTION
total = float(f(x).sum())
### END SOLUTION

# %%
check_close(total, float((x**2).sum()), what="total")

# %% [markdown] tags=["exercise"]
# Why is f even?
#
# ### BEGIN SOLUTION
# Because (-x)² = x².
# ### END SOLUTION
'''


@pytest.fixture
def demo_labs(tmp_path: Path) -> Path:
    labs = tmp_path / "labs"
    labs.mkdir()
    (labs / "01_demo.py").write_text(DEMO)
    return labs


def test_strip_solutions_keeps_indentation_and_surroundings():
    source = "def f(x):\n    '''doc'''\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\nprint(1)"
    assert release.strip_solutions(source) == (
        "def f(x):\n    '''doc'''\n    raise NotImplementedError(\"your code here\")\nprint(1)")


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without a ### BEGIN SOLUTION"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside the solution opened on line 1"),
])
def test_strip_solutions_rejects_unbalanced_markers(source: str, message: str):
    with pytest.raises(UsageError, match=message):
        release.strip_solutions(source, where="lab, cell 3")


def test_release_writes_the_student_edition(demo_labs: Path, tmp_path: Path, capsys):
    out = tmp_path / "student"
    assert cli.main(["release", "--out", str(out), "--labs", str(demo_labs)]) == 0
    assert f"wrote {out / '01_demo.ipynb'}" in capsys.readouterr().out
    student = nbformat.read(out / "01_demo.ipynb", as_version=4)
    nbformat.validate(student)
    sources = [c.source for c in student.cells]
    assert sources[3] == 'def f(x):\n    """x squared."""\n    raise NotImplementedError("your code here")'
    assert sources[5] == 'raise NotImplementedError("your code here")'
    assert sources[7] == "Why is f even?\n\nYOUR ANSWER HERE"
    assert not any("x * x" in s or "BEGIN SOLUTION" in s for s in sources)
    assert student.metadata["kernelspec"]["name"] == "python3"
    # nbgrader metadata: exercises are solution cells, the check after each code exercise is a graded test.
    meta = [c.metadata.get("nbgrader") for c in student.cells]
    assert meta[3] == {"grade": False, "grade_id": "01_demo-exercise-1", "locked": False,
                       "schema_version": 3, "solution": True, "task": False}
    assert meta[4] == {"grade": True, "grade_id": "01_demo-check-1", "locked": True, "points": 1,
                       "schema_version": 3, "solution": False, "task": False}
    assert meta[6]["grade_id"] == "01_demo-check-2"
    # a written answer (markdown exercise) is a manually graded answer worth points
    assert meta[7] == {"grade": True, "grade_id": "01_demo-answer-1", "locked": False, "points": 2,
                       "schema_version": 3, "solution": True, "task": False}
    assert [m is None for m in meta[:3]] == [True, True, True]
    assert student.cells[3].metadata["tags"] == ["exercise"]
    # The .py twin holds the same cells and metadata (cell_metadata_filter keeps tags and nbgrader).
    assert "nbgrader=" in (out / "01_demo.py").read_text()
    assert cell_summary(jupytext.read(out / "01_demo.py")) == cell_summary(student)


def test_nbgrader_source_edition_keeps_solutions(demo_labs: Path, tmp_path: Path):
    written = release.release(demo_labs, tmp_path / "student", nbgrader_source=tmp_path / "source")
    # Only the notebook: nbgrader hands every other file in source/<lab>/ to the students unchanged.
    assert sorted(p.name for p in (tmp_path / "source" / "01_demo").iterdir()) == ["01_demo.ipynb"]
    assert tmp_path / "source" / "01_demo" / "01_demo.ipynb" in written
    source = nbformat.read(tmp_path / "source" / "01_demo" / "01_demo.ipynb", as_version=4)
    assert "y = x * x" in source.cells[3].source and "### BEGIN SOLUTION" in source.cells[3].source
    assert source.cells[3].metadata["nbgrader"]["solution"] is True


def test_explicit_nbgrader_metadata_in_the_source_wins(demo_labs: Path, tmp_path: Path):
    text = DEMO.replace('# %% tags=["exercise"]\ndef f',
                        '# %% tags=["exercise"] nbgrader={"grade_id": "square", "points": 3}\ndef f')
    (demo_labs / "01_demo.py").write_text(text)
    release.release(demo_labs, tmp_path / "out")
    meta = nbformat.read(tmp_path / "out" / "01_demo.ipynb", as_version=4).cells[3].metadata["nbgrader"]
    assert meta["grade_id"] == "square" and meta["points"] == 3 and meta["solution"] is True


def test_release_refuses_untagged_solutions(demo_labs: Path, tmp_path: Path):
    (demo_labs / "01_demo.py").write_text(DEMO.replace('# %% tags=["exercise"]\ndef f', "# %%\ndef f"))
    with pytest.raises(UsageError, match=r"01_demo, cell 4 has .* not tagged 'exercise'"):
        release.release(demo_labs, tmp_path / "out")


def test_release_refuses_an_exercise_without_solution(demo_labs: Path, tmp_path: Path):
    (demo_labs / "01_demo.py").write_text(DEMO + '\n# %% tags=["exercise"]\nprint("nothing to hide")\n')
    with pytest.raises(UsageError, match="tagged 'exercise' but has no ### BEGIN SOLUTION"):
        release.release(demo_labs, tmp_path / "out")


def test_release_replaces_symlinks_instead_of_writing_through_them(demo_labs: Path, tmp_path: Path):
    """A site folder of links to labs/*: the links become student files, the instructor sources stay."""
    site = tmp_path / "site"
    site.mkdir()
    (demo_labs / "01_demo.ipynb").write_text("instructor notebook")
    for name in ("01_demo.py", "01_demo.ipynb"):
        (site / name).symlink_to(demo_labs / name)
    (demo_labs / "01_demo.ipynb").unlink()  # read_lab would pair it: keep only the .py source
    (site / "01_demo.ipynb").unlink()
    (site / "01_demo.ipynb").symlink_to(tmp_path / "elsewhere.ipynb")
    (tmp_path / "elsewhere.ipynb").write_text("someone else's")
    assert cli.main(["release", "--out", str(site), "--labs", str(demo_labs)]) == 0
    assert (demo_labs / "01_demo.py").read_text() == DEMO
    assert (tmp_path / "elsewhere.ipynb").read_text() == "someone else's"
    for name in ("01_demo.py", "01_demo.ipynb"):
        assert not (site / name).is_symlink() and "your code here" in (site / name).read_text()


def test_release_refuses_a_link_to_the_labs_folder(demo_labs: Path, tmp_path: Path, capsys):
    (tmp_path / "site").symlink_to(demo_labs)
    assert cli.main(["release", "--out", str(tmp_path / "site"), "--labs", str(demo_labs)]) == 2
    assert "labkit: error: " in capsys.readouterr().err
    assert (demo_labs / "01_demo.py").read_text() == DEMO


def test_release_refuses_to_overwrite_the_sources(demo_labs: Path, capsys):
    assert cli.main(["release", "--out", str(demo_labs), "--labs", str(demo_labs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labkit: error: ") and "would overwrite the instructor sources" in err
    assert (demo_labs / "01_demo.py").read_text() == DEMO


def test_release_selects_labs_by_name(demo_labs: Path, tmp_path: Path):
    shutil.copy(demo_labs / "01_demo.py", demo_labs / "02_other.py")
    assert [p.name for p in release.release(demo_labs, tmp_path / "a", names=["02"])] == [
        "02_other.ipynb", "02_other.py"]
    with pytest.raises(UsageError, match="No lab matches 07; available: 01_demo, 02_other"):
        release.release(demo_labs, tmp_path / "b", names=["07"])


def test_demo_student_edition_fails_at_the_first_exercise(demo_labs: Path, tmp_path: Path):
    """The execution check used for every lab, on a lab whose exercise only defines a function."""
    release.release(demo_labs, tmp_path / "out")
    nb, error = execute(tmp_path / "out" / "01_demo.ipynb", timeout=120)
    assert (error.ename, error.evalue) == ("NotImplementedError", "your code here")
    assert failed_cell(nb) == 4  # the check cell that calls the stubbed f
    assert "setup ran" in nb.cells[1].outputs[0].text
    traceback = _ANSI.sub("", "\n".join(nb.cells[4].outputs[-1].traceback))
    assert f"Cell In[{nb.cells[3].execution_count}]" in traceback
