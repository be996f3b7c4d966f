"""Checkpoints: plain-types format, atomic writes, clear errors."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import labkit.checkpoint as ckpt_mod
from labkit.checkpoint import check_resume_length, load_checkpoint, save_checkpoint
from labkit.errors import CheckpointError, LabkitError
from labkit.history import History
from tests.helpers import classifier
from tests.test_lab_core import blobs  # noqa: F401  (the documented toy lab, as a fixture)


def _save(path, model=None, epoch=1):
    model = model or classifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = History()
    history.append(1, 1e-3, 0.5, {"train_loss": 1.25})
    return save_checkpoint(path, model=model, optimizer=opt, epoch=epoch, history=history,
                           config={"lr": 1e-3, "data": tmp_path_like(path), "layers": (2, 3)})


def tmp_path_like(path):
    return path.parent  # a pathlib.Path: must be stored as a plain str


def test_round_trip_with_weights_only(tmp_path):
    model = classifier()
    path = _save(tmp_path / "ck.pt", model)
    raw = torch.load(path, weights_only=True)  # must not raise
    assert raw["format"] == "labkit.checkpoint" and raw["config"]["data"] == str(tmp_path)
    other = classifier()
    loaded = load_checkpoint(path, other)
    assert loaded.epoch == 1 and loaded.history["train_loss"] == [1.25] and loaded.model_class == "Sequential"
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = _save(tmp_path / "last.pt", epoch=1)
    before = path.read_bytes()

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full (injected)")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with pytest.raises(OSError, match="injected"):
        _save(tmp_path / "last.pt", epoch=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path).epoch == 1
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]  # no temp file left behind


def test_missing_file_names_the_path_and_neighbours(tmp_path):
    _save(tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match=r"No checkpoint at .*lats\.pt.*best\.pt"):
        load_checkpoint(tmp_path / "lats.pt")


def test_truncated_file_is_reported_as_corrupt(tmp_path):
    path = _save(tmp_path / "ck.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_mismatched_model_names_the_keys(tmp_path):
    path = _save(tmp_path / "ck.pt", classifier(classes=3))
    with pytest.raises(CheckpointError, match=r"shape mismatches.*3\.weight: checkpoint \(3, 32\) vs model \(5, 32\)"):
        load_checkpoint(path, classifier(classes=5))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(2\): 3\.weight, 3\.bias"):
        load_checkpoint(path, nn.Sequential(nn.Linear(8, 3)))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "labkit.checkpoint", "model": {}, "payload": object()}, path)
    with pytest.raises(CheckpointError, match="will not unpickle"):
        load_checkpoint(path)


def test_bare_state_dict_is_accepted(tmp_path):
    model = classifier()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    other = classifier()
    load_checkpoint(tmp_path / "weights.pt", other)
    assert torch.equal(model[0].weight, other[0].weight)


def test_ddp_prefix_is_stripped(tmp_path):
    model = classifier()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "ddp.pt")
    other = classifier()
    load_checkpoint(tmp_path / "ddp.pt", other)
    assert torch.equal(model[3].bias, other[3].bias)


def test_policy_writes_last_best_and_chosen_epochs(tmp_path):
    from labkit.callbacks import Progress
    from labkit.checkpoint import CheckpointPolicy
    from labkit.engine import fit
    from tests.helpers import loaders

    train, val = loaders()
    model = classifier()
    history = fit(model, train, epochs=4, optimizer=torch.optim.SGD(model.parameters(), lr=0.05), eval_data=val,
                  metrics=("accuracy",),
                  callbacks=[CheckpointPolicy(tmp_path, at_epochs=(2, 3), monitor="val_accuracy"), Progress(False)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "epoch_002.pt", "epoch_003.pt", "last.pt"]
    best_epoch, _ = history.best("val_accuracy")
    assert load_checkpoint(tmp_path / "best.pt").epoch == best_epoch
    assert load_checkpoint(tmp_path / "last.pt").epoch == 4


def test_resuming_a_length_shaped_schedule_for_other_epochs_is_refused():
    with pytest.raises(CheckpointError, match=r"cosine .* planned for 10 epochs.*--epochs 10") as err:
        check_resume_length("last.pt", {"schedule": "cosine", "epochs": 10}, 20)
    assert isinstance(err.value, LabkitError)  # the CLI prints it without a traceback
    with pytest.raises(CheckpointError, match="onecycle"):
        check_resume_length("last.pt", {"schedule": "onecycle", "epochs": 10}, 5)
    check_resume_length("last.pt", {"schedule": "cosine", "epochs": 10}, 10)  # same plan: fine
    check_resume_length("last.pt", {"schedule": "step", "epochs": 10}, 20)  # a step schedule extends
    check_resume_length("last.pt", {"schedule": "cosine", "epochs": 10}, None)  # epochs from the checkpoint


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.__setitem__("version", "2"), "'version' is '2'"),
    (lambda c: c.__setitem__("version", None), "'version' is None"),
    (lambda c: c.pop("model"), "'model' is missing"),
    (lambda c: c.__setitem__("model", {"w": [1.0]}), "not tensors"),
    (lambda c: c.__setitem__("history", [1, 2]), "'history' is a list"),
    (lambda c: c.__setitem__("epoch", "ten"), "'epoch' is 'ten'"),
    (lambda c: c.__setitem__("config", "lr=0.1"), "'config' is a str"),
])
def test_hand_edited_checkpoints_are_labkit_errors(tmp_path, edit, message):
    """A checkpoint edited by hand fails with what is wrong, never a TypeError/KeyError traceback."""
    data = torch.load(_save(tmp_path / "ck.pt"), weights_only=True)
    edit(data)
    torch.save(data, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="damaged labkit checkpoint") as err:
        load_checkpoint(tmp_path / "edited.pt", classifier())
    assert message in str(err.value)


def test_legacy_non_zip_checkpoint_is_reported_as_such(tmp_path):
    torch.save(classifier().state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy .*non-zip.* format"):
        load_checkpoint(tmp_path / "old.pt", classifier())


def test_a_bad_rng_state_on_resume_is_a_labkit_error(tmp_path):
    data = torch.load(_save(tmp_path / "ck.pt"), weights_only=True)
    data["rng"] = {"torch": torch.zeros(3, dtype=torch.uint8), "python": [1, 2], "numpy": None}
    torch.save(data, tmp_path / "rng.pt")
    with pytest.raises(CheckpointError, match="random-number state"):
        load_checkpoint(tmp_path / "rng.pt", classifier(), restore_rng=True)


def test_a_flipped_byte_in_a_tensor_of_a_real_checkpoint_is_refused(blobs, tmp_path):  # noqa: F811
    """A checkpoint is a zip: one flipped byte inside a weight loaded as wrong weights, silently."""
    import zipfile

    from labkit import runner

    runner.run(blobs, blobs.config("smoke", out=str(tmp_path / "run")))
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    with zipfile.ZipFile(path) as archive:
        record = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        start = record.header_offset + 30 + len(record.filename.encode()) + len(record.extra)
    data = bytearray(path.read_bytes())
    data[start + record.file_size // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"last\.pt.*damaged.*earlier checkpoint.*retrain"):
        load_checkpoint(path)


def test_weights_of_another_dtype_are_refused_naming_key_and_dtypes(tmp_path):
    model = classifier()
    torch.save({k: v.to(torch.int8) for k, v in model.state_dict().items()}, tmp_path / "int8.pt")
    with pytest.raises(CheckpointError, match=r"0\.weight.*torch\.int8.*torch\.float32"):
        load_checkpoint(tmp_path / "int8.pt", classifier())
