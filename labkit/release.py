"""`labkit release`: the student edition of the labs (`labs/NN_name.py`, jupytext percent) from the instructor sources.
An exercise is a cell tagged `exercise` whose solution sits between nbgrader's `### BEGIN SOLUTION` / `### END SOLUTION`
lines; the student edition replaces it by `raise NotImplementedError("your code here")` (a markdown answer by "YOUR
ANSWER HERE") and clears outputs. Both editions carry nbgrader metadata: exercises are "autograded answer" cells, the
check cell after one an "autograder tests" cell worth a point, a written answer a "manually graded answer" worth
`ANSWER_POINTS`. `--nbgrader-source` writes the instructor edition."""

from __future__ import annotations

import argparse
import copy
import re
from dataclasses import dataclass
from pathlib import Path

import jupytext
from jupytext.combine import combine_inputs_with_outputs
from nbformat import NotebookNode

from labkit.errors import UsageError
from labkit.files import write_text_atomic

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
CODE_STUB = 'raise NotImplementedError("your code here")'
ANSWER_STUB = "YOUR ANSWER HERE"
EXERCISE_TAG = "exercise"
NBGRADER_SCHEMA_VERSION = 3
ANSWER_POINTS = 2  # of a written answer (a markdown exercise cell) unless its nbgrader metadata says otherwise

_CHECK_CALL = re.compile(r"\bcheck_\w*\s*\(|\blabkit\.check\b")  # calls `check_shape(...)`, `labkit.check.x(...)`


@dataclass(frozen=True)
class Lab:
    source: Path  # the jupytext percent source; its paired notebook is beside it
    name = property(lambda self: self.source.stem)
    notebook = property(lambda self: self.source.with_suffix(".ipynb"))


def find_labs(labs_dir: Path, names: list[str] | None = None) -> list[Lab]:
    """The labs under `labs_dir` (`*.py` percent sources), or those whose name starts with one of `names`."""
    if not labs_dir.is_dir():
        raise UsageError(f"No labs folder at {labs_dir}: run from the repository root or pass --labs DIR.")
    labs = [Lab(path) for path in sorted(labs_dir.glob("*.py")) if not path.name.startswith("_")]
    if names:
        if unknown := [n for n in names if not any(lab.name.startswith(n) for lab in labs)]:
            raise UsageError(f"No lab matches {', '.join(unknown)}; available: {', '.join(lab.name for lab in labs)}.")
        labs = [lab for lab in labs if any(lab.name.startswith(n) for n in names)]
    if not labs:
        raise UsageError(f"No lab sources (*.py in jupytext percent format) under {labs_dir}.")
    return labs


def read_lab(lab: Lab) -> NotebookNode:
    """The instructor notebook: cells from the `.py` source, cell ids and kernelspec from the paired `.ipynb`."""
    nb = jupytext.read(lab.source)
    if lab.notebook.exists():
        nb = combine_inputs_with_outputs(nb, jupytext.read(lab.notebook), fmt="py:percent")
    # Without a kernelspec JupyterLab asks students to pick a kernel; the .py source carries none.
    nb.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
    jupytext_meta = nb.metadata.get("jupytext", {})
    if jupytext_meta.get("main_language") == nb.metadata["kernelspec"].get("language"):
        jupytext_meta.pop("main_language")  # implied by the kernelspec, as in the paired .ipynb
    return nb


def is_exercise(cell: NotebookNode) -> bool:
    return EXERCISE_TAG in cell.get("metadata", {}).get("tags", [])


def is_check(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and bool(_CHECK_CALL.search(cell.source))


def has_markers(source: str) -> bool:
    return any(line.strip() in (BEGIN_SOLUTION, END_SOLUTION) for line in source.splitlines())


def strip_solutions(source: str, stub: str = CODE_STUB, where: str = "cell") -> str:
    """Replace every BEGIN/END SOLUTION region (markers included) by `stub`, indented like the BEGIN line."""
    out: list[str] = []
    begin_line: int | None = None
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker == BEGIN_SOLUTION:
            if begin_line is not None:
                raise UsageError(f"{where}, line {number}: {BEGIN_SOLUTION} inside the solution opened on line "
                                   f"{begin_line}; close it with {END_SOLUTION} first.")
            begin_line = number
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + stub_line for stub_line in stub.splitlines())
        elif marker == END_SOLUTION:
            if begin_line is None:
                raise UsageError(f"{where}, line {number}: {END_SOLUTION} without a {BEGIN_SOLUTION} before it.")
            begin_line = None
        elif begin_line is None:
            out.append(line)
    if begin_line is not None:
        raise UsageError(f"{where}, line {begin_line}: {BEGIN_SOLUTION} is never closed by {END_SOLUTION}.")
    return "\n".join(out)


def _set_nbgrader(cell: NotebookNode, grade_id: str, solution: bool, grade: bool, points: int | None = None) -> None:
    """nbgrader's metadata on `cell` (what the source already has wins); answers are unlocked, checks locked."""
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": NBGRADER_SCHEMA_VERSION,
            "solution": solution, "task": False, **({} if points is None else {"points": points})}
    cell.metadata["nbgrader"] = {**meta, **cell.metadata.get("nbgrader", {})}


def mark_exercises(nb: NotebookNode, lab_name: str) -> NotebookNode:
    """A copy of the instructor notebook with nbgrader metadata on exercise and check cells; markers outside
    `exercise` cells, or an exercise without them, are refused. Metadata in the source wins over the defaults."""
    nb = copy.deepcopy(nb)
    exercise_count = answer_count = 0
    awaiting_check = False
    for index, cell in enumerate(nb.cells, start=1):
        where = f"{lab_name}, cell {index}"
        if is_exercise(cell):
            if cell.cell_type not in ("code", "markdown"):
                raise UsageError(f"{where}: only code and markdown cells can be exercises.")
            if not has_markers(cell.source):
                raise UsageError(f"{where} is tagged {EXERCISE_TAG!r} but has no {BEGIN_SOLUTION} / {END_SOLUTION} "
                                 "lines: put the solution between them (or remove the tag).")
            strip_solutions(cell.source, where=where)  # validates the markers
            exercise_count += 1
            if cell.cell_type == "markdown":  # a written answer: graded by hand, with points
                answer_count += 1
                _set_nbgrader(cell, f"{lab_name}-answer-{answer_count}", True, True, ANSWER_POINTS)
            else:
                _set_nbgrader(cell, f"{lab_name}-exercise-{exercise_count}", True, False)
            awaiting_check = cell.cell_type == "code"
        elif has_markers(cell.source):
            raise UsageError(f"{where} has {BEGIN_SOLUTION} / {END_SOLUTION} lines but is not tagged "
                             f"{EXERCISE_TAG!r}: tag it (`# %% tags=[\"{EXERCISE_TAG}\"]`) so the solution is "
                             "removed from the student edition.")
        elif awaiting_check and is_check(cell):
            _set_nbgrader(cell, f"{lab_name}-check-{exercise_count}", False, True, 1)
            awaiting_check = False
    grade_ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.get("metadata", {})]
    if duplicates := sorted({g for g in grade_ids if grade_ids.count(g) > 1}):
        raise UsageError(f"{lab_name}: nbgrader grade_id used twice: {', '.join(duplicates)}.")
    return nb


def instructor_edition(nb: NotebookNode, lab_name: str) -> NotebookNode:
    """The notebook with nbgrader metadata and no outputs."""
    nb = mark_exercises(nb, lab_name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.get("metadata", {}).pop("execution", None)
    return nb


def student_edition(nb: NotebookNode, lab_name: str) -> NotebookNode:
    nb = instructor_edition(nb, lab_name)
    for index, cell in enumerate(nb.cells, start=1):
        if is_exercise(cell):
            stub = CODE_STUB if cell.cell_type == "code" else ANSWER_STUB
            cell.source = strip_solutions(cell.source, stub, where=f"{lab_name}, cell {index}")
    return nb


def write_notebook(nb: NotebookNode, ipynb_path: Path, with_py: bool = True) -> list[Path]:
    """Write `nb` as `.ipynb` (and as its paired jupytext percent `.py`); return the paths. Each file is
    replaced atomically: a symlink there is replaced by a file, never written through."""
    paths = [ipynb_path, ipynb_path.with_suffix(".py")] if with_py else [ipynb_path]
    for path in paths:
        text = jupytext.writes(nb, fmt="ipynb" if path.suffix == ".ipynb" else "py:percent")
        write_text_atomic(path, text if text.endswith("\n") else text + "\n")
    return paths


def release(labs_dir: Path, out: Path, names: list[str] | None = None,
            nbgrader_source: Path | None = None) -> list[Path]:
    """Write the student edition of each lab into `out` (and the nbgrader source edition); return the files.
    A target that is one of the instructor sources (`--out` the labs folder, or a link to it) is refused."""
    sources = {path.resolve() for lab in find_labs(labs_dir) for path in (lab.source, lab.notebook)}
    written: list[Path] = []
    for lab in find_labs(labs_dir, names):
        nb = read_lab(lab)
        student = out / f"{lab.name}.ipynb"
        # Only the .ipynb for nbgrader: it copies every other file of source/<lab>/ to the students as is,
        # so a .py twin there would hand out the solutions.
        source = None if nbgrader_source is None else nbgrader_source / lab.name / f"{lab.name}.ipynb"
        for target in [student, student.with_suffix(".py"), *([source] if source else [])]:
            if target.parent.resolve() / target.name in sources:
                raise UsageError(f"--out {out}: {target} is an instructor source"
                                 "; writing there would overwrite the instructor sources. Choose another folder.")
        written += write_notebook(student_edition(nb, lab.name), student)
        if source is not None:
            written += write_notebook(instructor_edition(nb, lab.name), source, with_py=False)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder for the student edition (.ipynb + .py)")
    parser.add_argument("--labs", type=Path, default=None,
                        help="folder of instructor sources labs/*.py (default: ./labs or the checkout's labs/)")
    parser.add_argument("--nbgrader-source", type=Path, default=None, metavar="DIR",
                        help="also write the instructor edition with nbgrader metadata as DIR/<lab>/<lab>.ipynb "
                             "(only the .ipynb; point it at an nbgrader course's source/ folder)")
    parser.add_argument("names", nargs="*", help="only labs whose name starts with these (e.g. 01 03)")


def main(args: argparse.Namespace) -> int:
    labs_dir = args.labs or (Path("labs") if Path("labs").is_dir() else Path(__file__).resolve().parent.parent / "labs")
    for path in release(labs_dir, args.out, args.names or None, args.nbgrader_source):
        print(f"wrote {path}")
    return 0
