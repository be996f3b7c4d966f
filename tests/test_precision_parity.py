"""bench/precision_parity.py: fp32 and bf16 runs of Lab 02's course recipe, the table, each run's CPU and bf16 mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "precision_parity.py"


def parity(tmp_path: Path, forced: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LABKIT_CPU_BF16": forced, "CUDA_VISIBLE_DEVICES": "", "LABKIT_RUNS": str(tmp_path / "runs"),
           "LABKIT_DATA": str(tmp_path / "data")}
    return subprocess.run([sys.executable, str(BENCH), "--size", "smoke", "--out", str(tmp_path / "parity"), *args],
                          capture_output=True, text=True, env=env, check=False)


def test_without_bf16_it_refuses_and_says_how_to_measure_anyway(tmp_path):
    done = parity(tmp_path, "0", "--seeds", "0")
    assert done.returncode != 0
    assert "no native bf16" in done.stderr and "LABKIT_CPU_BF16=1" in done.stderr
    assert not (tmp_path / "parity").exists()  # nothing trained


def test_two_seeds_each_give_the_table_and_a_rerun_reads_them_again(tmp_path):
    table = tmp_path / "parity.json"
    done = parity(tmp_path, "1", "--seeds", "0", "1", "--jobs", "2", "--json", str(table))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(table.read_text())
    assert sorted((r["precision"], r["seed"]) for r in result["runs"]) == [
        ("bf16", 0), ("bf16", 1), ("fp32", 0), ("fp32", 1)]
    for run in result["runs"]:
        assert run["cpu"] and run["threads"] == max(1, (os.cpu_count() or 2) // 2)
        assert run["bf16"] == "not used" if run["precision"] == "fp32" else run["bf16"] in (
            "native", "emulated (LABKIT_CPU_BF16=1)")
        folder = tmp_path / "parity" / f"{run['precision']}-seed{run['seed']}"
        config = json.loads((folder / "metrics.json").read_text())["config"]
        assert (config["amp"], config["seed"], config["recipe"]) == (run["precision"] == "bf16", run["seed"], "course")
    for precision in ("fp32", "bf16"):
        accuracies = [r["accuracy"] for r in result["runs"] if r["precision"] == precision]
        assert result["table"][precision]["median"] == pytest.approx(sum(accuracies) / 2)
        assert result["table"][precision]["spread"] == pytest.approx(max(accuracies) - min(accuracies))
    gap = abs(result["table"]["bf16"]["median"] - result["table"]["fp32"]["median"])
    assert result["median_gap"] == pytest.approx(gap, abs=1e-4)
    assert done.stdout.strip().splitlines()[-1].startswith("RESULT fp32_median=")

    metrics = tmp_path / "parity" / "fp32-seed0" / "metrics.json"
    before = metrics.stat().st_mtime_ns
    again = parity(tmp_path, "1", "--seeds", "0", "1", "--json", str(table))
    assert again.returncode == 0 and metrics.stat().st_mtime_ns == before  # read, not retrained
    assert json.loads(table.read_text())["table"] == result["table"]
    assert result["complete"] is True

    partial = parity(tmp_path, "0", "--seeds", "0", "1", "2", "--available", "--json", str(table))  # trains nothing
    assert partial.returncode == 0, partial.stderr
    assert "4 of 6 runs finished (a partial table)" in partial.stdout
    assert partial.stdout.strip().endswith("complete=no")
    assert not (tmp_path / "parity" / "fp32-seed2").exists()
    assert json.loads(table.read_text())["complete"] is False
    assert json.loads(table.read_text())["table"] == result["table"]
    empty = parity(tmp_path, "0", "--available", "--out", str(tmp_path / "nothing"))
    assert empty.returncode != 0 and "no finished run of each precision" in empty.stderr


def test_each_runs_machine_is_recorded_before_it_trains(tmp_path):
    """parity-run.json is written before the run (its --overwrite keeps it): a sweep stopped at any point after the
    run's metrics appear still knows the run's CPU and bf16 mode; here the run itself fails at once."""
    done = parity(tmp_path, "1", "--seeds", "0", "--", "--epochs", "0")
    assert done.returncode != 0 and "fp32 seed 0 failed" in done.stderr
    folder = tmp_path / "parity" / "fp32-seed0"
    assert not (folder / "metrics.json").exists()
    run = json.loads((folder / "parity-run.json").read_text())
    assert run["cpu"] and run["bf16"] == "not used" and run["threads"] >= 1
    assert "--epochs" in (tmp_path / "parity" / "fp32-seed0.log").read_text()  # the run's own error, in its log
