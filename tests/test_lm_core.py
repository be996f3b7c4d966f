"""Core behaviour the language-model lab relies on (kept with the lab's tests)."""

from __future__ import annotations

import torch

from labkit.checkpoint import load_checkpoint, save_checkpoint


def test_checkpoint_round_trip_loads_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "c.pt", model=model, epoch=2, config={"vocab": ["a", "b"]})
    other = torch.nn.Linear(3, 2)
    ckpt = load_checkpoint(path, other)  # torch.load(weights_only=True) inside
    assert ckpt.epoch == 2 and ckpt.config["vocab"] == ["a", "b"]
    assert torch.equal(other.weight, model.weight)
    assert type(ckpt.payload["torch_version"]) is str
