"""A saved checkpoint loads back with weights_only=True (only plain types inside)."""

from __future__ import annotations

import torch

from labkit.checkpoint import load_checkpoint, save_checkpoint
from labkit.history import History


def test_checkpoint_round_trips_under_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    history = History()
    history.append(1, 0.1, 0.5, {"train_loss": 1.0})
    path = save_checkpoint(tmp_path / "last.pt", model=model, epoch=1, history=history, config={"lr": 0.1})
    torch.load(path, weights_only=True)  # raises if anything but plain types was pickled
    fresh = torch.nn.Linear(3, 2)
    ckpt = load_checkpoint(path, model=fresh)
    assert ckpt.epoch == 1 and ckpt.history.last("train_loss") == 1.0
    assert torch.equal(fresh.weight, model.weight)
