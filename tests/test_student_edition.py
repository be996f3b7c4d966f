"""The student edition asks; only the instructor edition answers.

For every lab: no sentence of any model answer (written or code) appears in the student edition,
every question the lab asks in prose is followed by a graded answer cell, and written answers carry
nbgrader's manually-graded metadata with points.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import labkit
from labkit.release import (
    ANSWER_STUB,
    BEGIN_SOLUTION,
    END_SOLUTION,
    Lab,
    find_labs,
    is_exercise,
    read_lab,
    student_edition,
)

_QUESTION = re.compile(r"\?(\*\*|\*|_)?(\s|$)")


def asks_question(cell) -> bool:
    """A markdown cell (not an answer) with a sentence ending in '?' outside code spans and math."""
    if cell.cell_type != "markdown" or is_exercise(cell):
        return False
    text = re.sub(r"`[^`]*`|\$[^$]*\$", "", cell.source)
    return bool(_QUESTION.search(text))


def questions_without_answers(nb) -> list[int]:
    """1-based indices of markdown cells asking a question that no answer cell follows.

    The answer may come right after the question, or after the code cells the question is about
    (an answer cell before the next markdown cell counts).
    """
    missing = []
    for index, cell in enumerate(nb.cells):
        if not asks_question(cell):
            continue
        answered = False
        for later in nb.cells[index + 1:]:
            if is_exercise(later) and later.cell_type == "markdown":
                answered = True
                break
            if later.cell_type == "markdown":
                break
        if not answered:
            missing.append(index + 1)
    return missing


def solution_texts(nb) -> list[str]:
    """Every solution region of every exercise cell (markers excluded), for leak checks."""
    texts = []
    for cell in nb.cells:
        if not is_exercise(cell):
            continue
        inside, lines = False, []
        for line in cell.source.splitlines():
            if line.strip() == BEGIN_SOLUTION:
                inside, lines = True, []
            elif line.strip() == END_SOLUTION:
                inside = False
                texts.append("\n".join(lines))
            elif inside:
                lines.append(line)
    return texts


LABS = find_labs(Path(__file__).resolve().parent.parent / "labs")


def _normal(text: str) -> str:
    text = re.sub(r"[*_`>#]", "", text)
    return re.sub(r"\s+", " ", text).strip().lower()


def _pieces(solution: str) -> list[str]:
    """Sentences of a written answer and lines of code, long enough to be telling (>= 25 characters)."""
    parts = re.split(r"(?<=[.!?])\s+|\n", solution)
    return [p for p in (_normal(part) for part in parts) if len(p) >= 25]


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_no_model_answer_reaches_the_student_edition(lab: Lab):
    instructor = read_lab(lab)
    student = student_edition(instructor, lab.name)
    shown = _normal("\n".join(cell.source for cell in student.cells))
    leaks = [piece for text in solution_texts(instructor) for piece in _pieces(text) if piece in shown]
    assert not leaks, f"{lab.name}: model answers in the student edition: {leaks[:3]}"


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_every_question_has_a_graded_answer_cell(lab: Lab):
    instructor = read_lab(lab)
    missing = questions_without_answers(instructor)
    assert not missing, (f"{lab.name}: cells {missing} ask a question with no answer cell after them "
                         "(a markdown cell tagged exercise with the model answer between the markers)")
    student = student_edition(instructor, lab.name)
    answers = [c for c in student.cells if is_exercise(c) and c.cell_type == "markdown"]
    assert answers, f"{lab.name} has no written question"
    for cell in answers:
        meta = cell.metadata["nbgrader"]
        assert meta["solution"] and meta["grade"] and meta["points"] > 0, meta
        assert ANSWER_STUB in cell.source


_DEFINES = re.compile(r"^(?:def|class)\s+(\w+)", re.MULTILINE)


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_no_exercise_answer_is_importable_from_labkit_by_its_name(lab: Lab):
    """What an exercise asks the student to write (`MyConvNet`, `train_one_epoch`, ...) is no name in any
    labkit module: a student cannot import the answer instead of writing it."""
    asked = {name for cell in read_lab(lab).cells if is_exercise(cell) and cell.cell_type == "code"
             for name in _DEFINES.findall(cell.source)}
    modules = [importlib.import_module(info.name) for info in pkgutil.walk_packages(labkit.__path__, "labkit.")
               if not info.name.endswith("__main__")]
    shipped = sorted(f"{module.__name__}.{name}" for module in modules for name in asked if hasattr(module, name))
    assert not shipped, f"{lab.name}: the exercise's answer ships under its own name: {shipped}"
