"""Labs 01-03 at smoke size: `labkit run` and the lab's report cope with a run that diverges and with one that
completes no epoch (plot what exists, say why the rest is missing); smoke data stay out of LABKIT_DATA."""

from __future__ import annotations

import pytest

from labkit import runner
from labkit.lab import get_lab

LABS = ("function-fitting", "cifar10", "mnist")


@pytest.mark.parametrize("name", LABS)
def test_a_run_that_completes_no_epoch_is_reported(name, tmp_path, capsys):
    lab = get_lab(name)
    summary = runner.command_run(lab, lab.config("smoke", out=str(tmp_path), time_budget=1e-6, tensorboard=False))
    assert summary["epochs_run"] == 0
    assert "no epoch completed" in capsys.readouterr().out


@pytest.mark.parametrize("name", LABS)
def test_a_diverged_run_is_reported(name, tmp_path, capsys):
    lab = get_lab(name)
    cfg = lab.config("smoke", out=str(tmp_path), lr=1e3, optimizer="sgd", tensorboard=False)
    summary = runner.command_run(lab, cfg)
    assert summary["diverged"] is True
    assert "diverged" in capsys.readouterr().out.lower()
    assert (tmp_path / "curves.png").is_file()


@pytest.mark.parametrize("name", ("cifar10", "mnist"))
def test_smoke_data_are_generated_outside_a_read_only_data_folder(name, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o555)  # a course server mounts LABKIT_DATA read-only
    monkeypatch.setenv("LABKIT_DATA", str(data))
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    lab = get_lab(name)
    assert len(runner.load_data(lab, lab.config("smoke")).train) > 0
    assert list(data.iterdir()) == [] and any((tmp_path / "cache" / "synthetic" / name).iterdir())
