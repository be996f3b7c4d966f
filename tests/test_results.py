"""Committed reference runs: recorded with their provenance, shown in notebooks, and the README's
results table generated from them (this test fails when the table and the files disagree)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit import results
from labkit.check import CheckFailed
from tests.test_lab_core import blobs  # noqa: F401  (the documented toy lab, as a fixture)
from tools import results_tables

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("readme, detail", [("README.md", False), ("results/README.md", True)])
def test_the_readme_results_tables_are_generated_from_results(readme, detail):
    text = (ROOT / readme).read_text()
    assert results_tables.README_BEGIN in text and results_tables.README_END in text
    start = text.index(results_tables.README_BEGIN)
    end = text.index(results_tables.README_END) + len(results_tables.README_END)
    assert text[start:end] == results_tables.readme_section(ROOT / "results", detail=detail), (
        f"{readme}'s results table is stale: run `python tools/results_tables.py --readme`")


def test_every_committed_reference_names_its_provenance():
    for path in sorted((ROOT / "results").glob("*/*/reference.json")):
        ref = json.loads(path.read_text())
        prov = ref["provenance"]
        for key in ("command", "device", "wall_seconds", "torch", "labkit_commit", "date"):
            assert prov.get(key) not in (None, ""), f"{path}: no {key}"
        assert ref["runs"], f"{path} records no run"
        assert ref["size"] == path.parent.name and ref["lab"] == path.parent.parent.name


def test_reproduce_records_a_reference_and_notebooks_compare_with_it(blobs, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("LABKIT_RESULTS", str(tmp_path / "results"))
    written = tmp_path / "results" / "blobs"  # once the runs wrote their files, git would say "+changes"
    monkeypatch.setattr(results, "_commit", lambda: "abc1234" + ("+changes" if written.exists() else ""))
    path = results.reproduce("blobs", "smoke")
    ref = json.loads(path.read_text())
    assert ref["lab"] == "blobs" and ref["size"] == "smoke"
    assert ref["provenance"]["labkit_commit"] == "abc1234"  # read before the runs wrote anything
    assert (tmp_path / "results" / "blobs" / "smoke" / "default" / "metrics.json").is_file()
    accuracy = ref["runs"]["default"]["test_accuracy"]
    assert ref["provenance"]["wall_seconds"] > 0 and "labkit reproduce blobs" in ref["provenance"]["command"]
    prov = ref["provenance"]  # a wall time is a figure only from a quiet machine: the load before and after
    assert {"load_average_before", "load_average_after", "torch_threads"} <= set(prov)
    assert prov["quiet"] == (max(prov["load_average_before"], prov["load_average_after"]) <= results.QUIET_LOAD)
    assert ref["estimates"] == []  # smoke runs print no estimate
    assert results.show_reference("blobs", "smoke") is not None
    assert "reference run: smoke size" in capsys.readouterr().out
    results.check_against_reference("blobs", "smoke", "default", "test_accuracy", accuracy - 0.01, tolerance=0.05)
    with pytest.raises(CheckFailed, match="more than 0.05 below"):
        results.check_against_reference("blobs", "smoke", "default", "test_accuracy", accuracy - 0.2,
                                        tolerance=0.05)
    assert "| blobs | smoke | default | " in results_tables.detail_table(tmp_path / "results")
    assert "| blobs | smoke | default: see results/README.md |" in results_tables.readme_table(tmp_path / "results")
