"""Faults of resume, export and output folders: each is handled or refused with one `labkit: error:` line
whose advice fixes it, and nothing of another run is written over (the toy lab keeps the cases fast)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from labkit import runner
from labkit.checkpoint import load_checkpoint
from tests.test_faults import _code
from tests.test_lab_core import blobs  # noqa: F401  (the documented toy lab, as a fixture)


@pytest.fixture
def run_a(blobs, tmp_path):  # noqa: F811
    """A finished 2-epoch smoke run of the toy lab (lr 0.01, adam, batch 32)."""
    out = tmp_path / "runA"
    assert runner.run(blobs, blobs.config("smoke", out=str(out), epochs=2, tensorboard=False)).last_checkpoint
    return out


def _record(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_export_never_writes_over_a_checkpoint_or_its_own_input(run_a, capsys):
    best, last = run_a / "checkpoints" / "best.pt", run_a / "checkpoints" / "last.pt"
    before = {p: p.read_bytes() for p in (best, last)}
    for target in (best, last):
        code, err = _code(["export", str(best), str(target)], capsys)
        assert code == 2 and "labkit: error:" in err and str(target) in err, err
    assert {p: p.read_bytes() for p in (best, last)} == before, "no checkpoint was replaced"
    plain = run_a / "hw.pth"
    assert _code(["export", str(best), str(plain)], capsys)[0] == 0
    assert _code(["export", str(last), str(plain)], capsys)[0] == 0, "an exported state_dict may be re-exported"


def test_resume_into_a_folder_holding_another_run_is_refused(blobs, run_a, tmp_path, capsys):  # noqa: F811
    run_b = tmp_path / "runB"
    assert _code(["run", "blobs", "--smoke", "--seed", "7", "--out", str(run_b)], capsys)[0] == 0
    before = (run_b / "checkpoints" / "last.pt").read_bytes()
    argv = ["run", "blobs", "--resume", str(run_a / "checkpoints" / "last.pt"), "--epochs", "3", "--out", str(run_b)]
    code, err = _code(argv, capsys)
    assert code == 1 and "another run" in err and "--overwrite" in err, err
    assert (run_b / "checkpoints" / "last.pt").read_bytes() == before
    assert _code([*argv, "--overwrite"], capsys)[0] == 0
    record = _record(run_b)
    assert record["config"]["seed"] == 0 and load_checkpoint(run_b / "checkpoints" / "last.pt").epoch == 3
    assert load_checkpoint(run_b / "checkpoints" / "best.pt").epoch == record["chosen_epoch"]


def test_resume_writes_into_the_folder_the_checkpoint_is_in(blobs, run_a, tmp_path, capsys):  # noqa: F811
    copy = tmp_path / "mycopy"
    shutil.copytree(run_a, copy)
    original = {p: p.read_bytes() for p in run_a.rglob("*") if p.is_file()}
    assert _code(["run", "blobs", "--resume", str(copy / "checkpoints" / "last.pt"), "--epochs", "3"], capsys)[0] == 0
    assert {p: p.read_bytes() for p in run_a.rglob("*") if p.is_file()} == original, "the original run is untouched"
    assert _record(copy)["summary"]["epochs_run"] == 3 and load_checkpoint(copy / "checkpoints" / "last.pt").epoch == 3
    loose = tmp_path / "loose.pt"
    shutil.copy(copy / "checkpoints" / "last.pt", loose)
    code, err = _code(["run", "blobs", "--resume", str(loose), "--epochs", "4"], capsys)
    assert code == 2 and "--out" in err, err


@pytest.mark.parametrize(("option", "shown"), [(["--lr", "0.5"], "0.01"), (["--hidden", "8"], "32"),
                                               (["--optimizer", "sgd"], "adam"), (["--batch-size", "16"], "32"),
                                               (["--seed", "3"], "0")])
def test_resume_refuses_an_option_that_differs_from_the_checkpoint(run_a, capsys, option, shown):
    last = run_a / "checkpoints" / "last.pt"
    before = last.read_bytes()
    code, err = _code(["run", "blobs", "--resume", str(last), "--epochs", "3", *option], capsys)
    assert code == 2, err
    assert f"labkit: error: {option[0]}: the checkpoint was trained with {shown}; drop {option[0]}" in err, err
    assert last.read_bytes() == before


def test_resume_refuses_another_recipe_and_fewer_epochs(blobs, run_a, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setattr(type(blobs), "recipes", {**blobs.recipes, "fast": {"lr": 0.02}})
    last = run_a / "checkpoints" / "last.pt"
    code, err = _code(["run", "blobs", "--resume", str(last), "--recipe", "fast", "--epochs", "3"], capsys)
    assert code == 2 and "--recipe: the checkpoint was trained with default" in err, err
    for epochs in ("1", "2"):
        code, err = _code(["run", "blobs", "--resume", str(last), "--epochs", epochs], capsys)
        assert code == 2 and f"--epochs {epochs}:" in err and "already trained 2" in err, err
    assert load_checkpoint(last).epoch == 2


def test_resume_applies_the_options_that_may_change(run_a, capsys):
    last = run_a / "checkpoints" / "last.pt"
    argv = ["run", "blobs", "--resume", str(last), "--epochs", "3", "--time-budget", "600", "--device", "cpu",
            "--checkpoint-minutes", "5"]
    assert _code(argv, capsys)[0] == 0
    config = _record(run_a)["config"]
    assert (config["epochs"], config["time_budget"], config["checkpoint_minutes"]) == (3, 600, 5)
    assert config["lr"] == 0.01 and config["out"] == str(run_a)


def test_resume_into_a_fresh_folder_reports_the_chosen_epoch(run_a, tmp_path, capsys):
    fresh = tmp_path / "fresh"
    argv = ["run", "blobs", "--resume", str(run_a / "checkpoints" / "last.pt"), "--epochs", "3", "--out", str(fresh)]
    assert _code(argv, capsys)[0] == 0
    record = _record(fresh)
    assert record["summary"]["best_epoch"] == record["chosen_epoch"]
    assert load_checkpoint(fresh / "checkpoints" / "best.pt").epoch == record["chosen_epoch"]


def test_a_kept_epoch_beyond_the_run_is_refused(blobs, tmp_path, capsys):  # noqa: F811
    code, err = _code(["run", "blobs", "--smoke", "--epochs", "1", "--at-epochs", "5", "--out", str(tmp_path)],
                      capsys)
    assert code == 2 and "--at-epochs" in err and "--epochs 1" in err, err


def test_a_looping_link_is_not_a_checkpoint(blobs, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    loop = out / "checkpoints" / "last.pt"
    loop.symlink_to(loop)
    code, err = _code(["run", "blobs", "--resume", str(loop)], capsys)
    assert code == 2 and "broken or looping link" in err, err
    assert _code(["run", "blobs", "--smoke", "--out", str(out)], capsys)[0] == 0
    assert "broken or looping link" in capsys.readouterr().out or load_checkpoint(loop).epoch == 3


def test_no_home_directory_says_to_set_labkit_data(tmp_path, capsys, monkeypatch):
    import pwd

    def no_user(uid):
        raise KeyError(uid)

    for name in ("HOME", "LABKIT_DATA", "LABKIT_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_user)  # a container user with no passwd entry: `~` cannot expand
    code, err = _code(["run", "mnist", "--smoke", "--out", str(tmp_path / "r")], capsys)
    assert code in (1, 2) and "labkit: error:" in err and "set LABKIT_DATA" in err and "Traceback" not in err, err


@pytest.fixture
def unwritable_runs(tmp_path, monkeypatch):
    """LABKIT_RUNS where nothing can be written (under a file: root may write into a read-only folder), and a
    fit that fails the test if training starts."""
    (tmp_path / "a-file").write_text("x")
    runs = tmp_path / "a-file" / "runs"
    monkeypatch.setenv("LABKIT_RUNS", str(runs))

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking the output folder")

    monkeypatch.setattr(runner, "fit", no_training)
    return runs


def test_smoke_checks_its_output_folder_before_training(unwritable_runs, capsys):
    code, err = _code(["smoke", "function-fitting"], capsys)
    assert code == 1 and str(unwritable_runs) in err and "LABKIT_RUNS" in err and "--out" in err, err


def test_compare_checks_its_output_folder_first(unwritable_runs, tmp_path, capsys):
    code, err = _code(["compare", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")], capsys)
    assert code == 1 and str(unwritable_runs) in err and "LABKIT_RUNS" in err and "--out" in err, err


def test_export_checks_the_weights_against_the_labs_model(run_a, capsys):
    """Weights cast to int8 (or any dtype the model does not have) are refused by export, not handed in."""
    import torch

    best = run_a / "checkpoints" / "best.pt"
    data = torch.load(best, weights_only=True)
    data["model"] = {k: v.to(torch.int8) if v.is_floating_point() else v for k, v in data["model"].items()}
    torch.save(data, run_a / "int8.pt")
    code, err = _code(["export", str(run_a / "int8.pt"), str(run_a / "hw.pth")], capsys)
    assert code == 1 and "int8" in err and "labkit: error:" in err, err
    assert not (run_a / "hw.pth").exists()
    assert _code(["export", str(best), str(run_a / "hw.pth")], capsys)[0] == 0
    model = runner.load_run(best).model
    model.load_state_dict(torch.load(run_a / "hw.pth", weights_only=True))  # the hand-in loads without labkit


def test_a_run_into_another_runs_checkpoints_folder_is_refused(blobs, run_a, capsys):  # noqa: F811
    ckpts = run_a / "checkpoints"
    before = {p.name: p.read_bytes() for p in ckpts.iterdir()}
    for extra in ([], ["--overwrite"]):
        code, err = _code(["run", "blobs", "--smoke", "--out", str(ckpts), *extra], capsys)
        assert code == 1 and "checkpoints folder" in err and "--out DIR" in err, err
    assert {p.name: p.read_bytes() for p in ckpts.iterdir()} == before, "nothing written into it"


def test_the_history_table_marks_a_metric_a_diverged_run_never_recorded():
    from labkit.history import History

    history = History()
    history.append(1, 1e6, 0.5, {"train_loss": float("nan"), "train_accuracy": 0.1})
    table = history.table(["train_loss", "test_loss"])
    assert table.splitlines()[-1].startswith("| 1 | nan | – |"), table
