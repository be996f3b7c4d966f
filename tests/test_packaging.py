"""Packaging: pyproject and environment.yml agree; the console script and notebooks are wired up."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment_pip_requirements() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = []
    for line in lines[start + 1:]:
        if line.strip().startswith("#"):
            continue
        match = re.match(r"^\s+-\s+(.+?)\s*$", line)
        if not match:
            break
        reqs.append(match.group(1))
    return reqs


def test_environment_yml_matches_pyproject_dependencies():
    """The conda route installs what `pip install -e ".[dev,course]"` does, so it runs the tests too."""
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    declared = sorted(project["dependencies"] + extras["dev"] + extras["course"])
    in_env = sorted(r for r in _environment_pip_requirements() if not r.startswith("-e"))
    assert set(extras) == {"dev", "course"}, "a new extra: add it to environment.yml too"
    missing = sorted(set(declared) - set(in_env))
    extra = sorted(set(in_env) - set(declared))
    assert not missing and not extra, (
        f"environment.yml's pip list and pyproject.toml differ: not in environment.yml {missing}, "
        f"not in pyproject.toml {extra}")
    assert in_env == declared  # no duplicates either
    assert "-e" in " ".join(_environment_pip_requirements()), "environment.yml should install labkit itself"


def test_dependencies_are_ranges_not_pins():
    project = _pyproject()["project"]
    for req in project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]:
        assert "==" not in req, f"{req}: declare a range (>=), not an exact pin"
    assert any(r.startswith("tensorboard>=2.21") for r in _pyproject()["project"]["dependencies"])


def test_console_script_points_at_cli_main():
    from labkit import cli

    assert _pyproject()["project"]["scripts"]["labkit"] == "labkit.cli:main"
    assert callable(cli.main)


@pytest.mark.parametrize("source", sorted((ROOT / "labs").glob("*.py")), ids=lambda p: p.name)
def test_lab_sources_are_paired_and_in_sync(source):
    notebook = source.with_suffix(".ipynb")
    assert notebook.exists(), f"{source.name} has no paired notebook: run jupytext --sync {source}"
    from_py = jupytext.read(source)
    from_nb = jupytext.read(notebook)
    assert [c.cell_type for c in from_py.cells] == [c.cell_type for c in from_nb.cells]
    assert [c.source for c in from_py.cells] == [c.source for c in from_nb.cells], (
        f"{source.name} and {notebook.name} differ: run jupytext --sync {source}")
    assert [c.metadata.get("tags") for c in from_py.cells] == [c.metadata.get("tags") for c in from_nb.cells]
    for cell in from_nb.cells:
        assert not cell.get("outputs"), f"{notebook.name} has stored outputs: strip them before committing"
