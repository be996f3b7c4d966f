"""The fault suite: what a clumsy or hostile user does, and the clear error or safe outcome each gets.

Every case here once gave a silent wrong result, a traceback, a hang or lost results (issue 16).
The toy lab of docs/ARCHITECTURE.md keeps the cases fast.
"""

from __future__ import annotations

import errno
import io
import json
import os
import socket

import pytest
import torch

from labkit import runner
from labkit.checkpoint import load_checkpoint, save_checkpoint
from labkit.cli import main
from labkit.errors import CheckpointError
from tests.test_lab_core import blobs  # noqa: F401  (the documented toy lab, as a fixture)


def _code(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as err:
        code = err.code
    return code, capsys.readouterr().err


def test_a_second_run_into_a_locked_folder_stops_and_names_the_folder(blobs, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    out.mkdir()
    (out / runner.LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                    "started": "now"}))
    code, err = _code(["run", "blobs", "--smoke", "--out", str(out)], capsys)
    assert code == 1 and "labkit: error:" in err and str(out) in err and "in use by another run" in err
    assert "--out" in err
    assert not (out / "checkpoints").exists(), "nothing of the second run was written"


def test_a_stale_lock_of_a_dead_process_is_taken_over(blobs, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    out.mkdir()
    (out / runner.LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()}))
    assert main(["run", "blobs", "--smoke", "--out", str(out)]) == 0
    assert "no longer runs" in capsys.readouterr().out
    assert not (out / runner.LOCK_NAME).exists(), "the lock is released at the end"


def test_a_folder_with_another_runs_checkpoints_needs_resume_or_overwrite(blobs, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    assert main(["run", "blobs", "--smoke", "--out", str(out)]) == 0
    before = (out / "checkpoints" / "last.pt").read_bytes()
    code, err = _code(["run", "blobs", "--smoke", "--out", str(out), "--lr", "0.5"], capsys)
    assert code == 1
    for needle in (str(out), "--resume", "--out", "--overwrite"):
        assert needle in err, err
    assert (out / "checkpoints" / "last.pt").read_bytes() == before, "the first run's results are kept"
    assert main(["run", "blobs", "--smoke", "--out", str(out), "--lr", "0.5", "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["config"]["lr"] == 0.5


def test_orphan_temporary_files_of_a_killed_save_are_removed(blobs, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    orphan = out / "checkpoints" / ".last.pt.tmp-4194999"   # a pid that does not run
    orphan.write_bytes(b"x" * 1000)
    assert main(["run", "blobs", "--smoke", "--out", str(out)]) == 0
    assert not orphan.exists()
    assert "unfinished temporary file" in capsys.readouterr().out


def test_out_being_a_file_is_a_clear_error(blobs, tmp_path, capsys):  # noqa: F811
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    code, err = _code(["run", "blobs", "--smoke", "--out", str(target)], capsys)
    assert code == 1 and "is a file, not a folder" in err


def test_smoke_does_not_persist_into_the_next_call(blobs, tmp_path):  # noqa: F811
    assert main(["run", "blobs", "--smoke", "--out", str(tmp_path / "a")]) == 0
    assert os.environ.get("LABKIT_SMOKE") in (None, "1")  # the test session's own setting, untouched
    before = dict(os.environ)
    assert main(["run", "blobs", "--size", "laptop", "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert dict(os.environ) == before, "no option passes through the environment"
    record = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert record["config"]["size"] == "laptop" and record["config"]["points"] == 600


def test_nan_weights_in_a_checkpoint_are_refused(blobs, tmp_path):  # noqa: F811
    result = runner.run(blobs, blobs.config("smoke", out=str(tmp_path / "r")))
    ckpt = load_checkpoint(result.best_checkpoint)
    state = dict(ckpt.payload["model"])
    name = next(iter(state))
    state[name] = torch.full_like(state[name], float("nan"))
    broken = tmp_path / "broken.pt"
    save_checkpoint(broken, model=_Holder(state), config=ckpt.config, epoch=ckpt.epoch)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        runner.load_run(broken)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        runner.export_state_dict(broken, tmp_path / "out.pth")


def test_export_writes_a_plain_state_dict(blobs, tmp_path, capsys):  # noqa: F811
    result = runner.run(blobs, blobs.config("smoke", out=str(tmp_path / "r")))
    target = tmp_path / "hw_123_name.pth"
    assert main(["export", str(result.best_checkpoint), str(target)]) == 0
    fresh = blobs.build_model(result.config, result.info)
    fresh.load_state_dict(torch.load(target, weights_only=True))
    x = torch.randn(5, 2)
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), result.model(x))


class _Holder(torch.nn.Module):
    """A module whose state_dict is a given dict (to write a hand-edited checkpoint)."""

    def __init__(self, state):
        super().__init__()
        self._state = state

    def state_dict(self, *args, **kwargs):
        return self._state


def test_a_time_budget_stops_inside_an_epoch_and_resume_is_exact(blobs, tmp_path):  # noqa: F811
    """A budget smaller than one epoch: the run stops mid-epoch with a loadable checkpoint, and resuming
    it gives the uninterrupted run's result."""
    settings = {"epochs": 2, "points": 2000, "batch_size": 16, "tensorboard": False}
    whole = runner.run(blobs, blobs.config("smoke", out=str(tmp_path / "whole"), **settings))
    cut = runner.run(blobs, blobs.config("smoke", out=str(tmp_path / "cut"), time_budget=1e-6, **settings))
    assert len(cut.history) == 0 and "time budget" in cut.history.stop_reason
    assert "resume with --resume" in cut.history.stop_reason
    ckpt = load_checkpoint(cut.last_checkpoint)
    assert ckpt.epoch == 0 and ckpt.partial["epoch"] == 1 and ckpt.partial["steps"] == 1
    resumed = runner.run(blobs, blobs.config("smoke", out=str(tmp_path / "cut"), **settings),
                         resume=cut.last_checkpoint)
    assert resumed.history.epoch == [1, 2]
    assert resumed.history["train_loss"] == pytest.approx(whole.history["train_loss"], rel=1e-5)
    assert resumed.history["val_accuracy"] == pytest.approx(whole.history["val_accuracy"])
    x = torch.randn(8, 2)
    with torch.no_grad():
        assert torch.allclose(resumed.model.eval()(x), whole.model.eval()(x), atol=1e-6)


def test_ctrl_c_writes_a_checkpoint_and_says_how_to_resume(blobs, tmp_path, capsys):  # noqa: F811
    import signal

    from labkit.callbacks import Callback

    class CtrlC(Callback):
        def on_step_end(self, state):
            if state.epoch == 1 and state.step == 5:
                os.kill(os.getpid(), signal.SIGINT)

    settings = {"epochs": 2, "points": 2000, "batch_size": 16, "tensorboard": False}
    whole = runner.run(blobs, blobs.config("smoke", out=str(tmp_path / "whole"), **settings))
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where pytest was started in the background (`cmd &`)
    with pytest.raises(KeyboardInterrupt, match="resume with --resume"):
        runner.run(blobs, blobs.config("smoke", out=str(tmp_path / "cut"), **settings), callbacks=[CtrlC()])
    last = tmp_path / "cut" / "checkpoints" / "last.pt"
    assert load_checkpoint(last).partial["steps"] == 5
    assert not (tmp_path / "cut" / runner.LOCK_NAME).exists(), "the folder is released"
    resumed = runner.run(blobs, blobs.config("smoke", out=str(tmp_path / "cut"), **settings), resume=last)
    assert resumed.history["train_loss"] == pytest.approx(whole.history["train_loss"], rel=1e-5)
    assert signal.getsignal(signal.SIGINT) is before, "the handler is restored"


class _FullDisk(io.FileIO):
    """A file on a full disk: every write fails with ENOSPC (as the kernel reports it)."""

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _disk_fills_up(monkeypatch):
    import labkit.files

    monkeypatch.setattr(labkit.files, "open", lambda path, mode="r": _FullDisk(path, mode.replace("b", "")),
                        raising=False)


def test_a_full_disk_during_a_save_says_so_and_keeps_the_old_checkpoint(blobs, tmp_path, monkeypatch,  # noqa: F811
                                                                         capsys):
    out = tmp_path / "run"
    assert main(["run", "blobs", "--smoke", "--out", str(out), "--epochs", "1"]) == 0
    last = out / "checkpoints" / "last.pt"
    before = last.read_bytes()
    _disk_fills_up(monkeypatch)
    code, err = _code(["run", "blobs", "--resume", str(last), "--epochs", "3"], capsys)
    assert code == 1 and "labkit: error:" in err and "Traceback" not in err
    assert "is full" in err and "the previous last.pt is kept unchanged" in err, err
    assert last.read_bytes() == before, "the old checkpoint is untouched"
    assert load_checkpoint(last).epoch == 1
    assert not [p for p in (out / "checkpoints").iterdir() if ".tmp-" in p.name], "no temporary file is left"
    assert not (out / runner.LOCK_NAME).exists(), "the folder is released"


def test_a_full_disk_is_reported_by_every_atomic_writer(tmp_path, monkeypatch):
    from labkit.errors import WriteError
    from labkit.files import write_text_atomic

    _disk_fills_up(monkeypatch)
    with pytest.raises(WriteError, match="nothing was written"):
        write_text_atomic(tmp_path / "metrics.json", "{}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("inner", ["tensorboard", "checkpoints"])
def test_a_file_where_the_run_writes_a_folder_is_a_clear_error(blobs, tmp_path, capsys, inner):  # noqa: F811
    out = tmp_path / "run"
    out.mkdir()
    (out / inner).write_text("a file, not a folder")
    code, err = _code(["run", "blobs", "--smoke", "--out", str(out)], capsys)
    assert code == 1 and "labkit: error:" in err and f"{out / inner} is a file, not a folder" in err, err
    assert (out / inner).read_text() == "a file, not a folder", "the user's file is left alone"


def test_out_under_a_file_is_a_clear_error(blobs, tmp_path, capsys):  # noqa: F811
    parent = tmp_path / "a-file"
    parent.write_text("x")
    code, err = _code(["run", "blobs", "--smoke", "--out", str(parent / "run")], capsys)
    assert code == 1 and "cannot be created" in err and "Traceback" not in err


def test_evaluation_of_a_large_split_shows_progress(capsys):
    from torch import nn

    from labkit.data.tensor_loader import TensorLoader
    from labkit.engine import EVAL_BAR_BATCHES, evaluate

    model = nn.Linear(4, 3)
    big = TensorLoader(torch.randn(64, 4), torch.randint(0, 3, (64,)), batch_size=2)
    assert len(big) >= EVAL_BAR_BATCHES
    evaluate(model, big, progress=True, desc="val")
    shown = capsys.readouterr().err
    assert f"/{len(big)} [" in shown and "val" in shown, shown  # a bar of the split's batches (cleared at the end)
    small = TensorLoader(torch.randn(8, 4), torch.randint(0, 3, (8,)), batch_size=4)
    evaluate(model, small, progress=True)
    evaluate(model, big)  # the default: no bar (tight loops, notebooks' own calls)
    assert capsys.readouterr().err == ""


class _Stop(Exception):
    pass


@pytest.mark.parametrize("lab_name", ["function-fitting", "cifar10", "mnist", "tiny-imagenet", "lm"])
def test_every_lab_refuses_another_runs_checkpoints_without_overwrite(lab_name, monkeypatch):
    """`labkit run LAB` passes --overwrite (default off) to the runner, which then refuses a folder holding
    another run's checkpoints (mnist's own main once replaced them silently)."""
    from labkit.cli import lab_parser
    from labkit.lab import get_lab

    seen = {}

    def fake_run(*args, **kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(runner, "run", fake_run)
    lab = get_lab(lab_name)
    for argv, expected in (([], False), (["--overwrite"], True)):
        args = lab_parser(lab).parse_args(["--smoke", *argv])
        seen.clear()
        with pytest.raises(_Stop):
            runner.command_run(lab, lab.config("smoke"), args)  # what `labkit run LAB` calls
        assert seen.get("overwrite", True) is expected, (lab_name, argv, seen)


def test_resuming_another_labs_checkpoint_names_that_lab(blobs, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    assert main(["run", "blobs", "--smoke", "--out", str(out), "--epochs", "1"]) == 0
    last = out / "checkpoints" / "last.pt"
    code, err = _code(["run", "function-fitting", "--resume", str(last)], capsys)
    assert code == 2 and "labkit: error:" in err and "`labkit run blobs --resume" in err, err


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_writing_to_a_folder_or_under_a_file_is_a_clear_error(tmp_path, where):
    from labkit.errors import WriteError
    from labkit.files import write_bytes_atomic

    if where == "a folder":
        target, message = tmp_path, "is a folder"
    else:
        (tmp_path / "a-file").write_text("x")
        target, message = tmp_path / "a-file" / "model.pth", "a-file is a file, not a folder"
    with pytest.raises(WriteError, match=message):
        write_bytes_atomic(target, b"weights")
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
