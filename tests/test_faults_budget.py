"""A 60-second budget on a Tiny-ImageNet-sized set stops inside the first epoch, and resuming is exact.

Issue 16: on the full Tiny-ImageNet one CPU epoch takes ~26 minutes, and a budget that was checked only
at epoch ends could not stop it. Here a generated set in the official on-disk layout with all 200
classes at 64x64 (4 train images per class: 100 steps of 8 per epoch) trains the lab's ResNet at a
small width through the runner, with `--time-budget 60` and `--checkpoint-minutes 0.5`. No wall time
is involved: `time.perf_counter` is a fake clock that a callback advances by one second per optimizer
step (about what a step of the course's ResNet-18 costs on a CPU), so the budget is spent after step 61
of 100 whatever the machine's speed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from labkit import runner
from labkit.callbacks import Callback
from labkit.checkpoint import load_checkpoint
from labkit.labs import tiny_imagenet
from labkit.labs.tiny_imagenet.data import write_synthetic_tiny_imagenet

SECONDS_PER_STEP = 1.0
STEPS_PER_EPOCH = 100  # 200 classes x 4 images / batch 8


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class StepTakesOneSecond(Callback):
    """Each optimizer step costs SECONDS_PER_STEP on the fake clock (it runs before the budget's check)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def on_step_end(self, state) -> None:
        self.clock.now += SECONDS_PER_STEP


@pytest.fixture(scope="module")
def tiny_200(tmp_path_factory) -> Path:
    return write_synthetic_tiny_imagenet(tmp_path_factory.mktemp("tiny200"), n_classes=200, n_train_per_class=4,
                                         n_val_per_class=1, seed=3)


def _config(root: Path, out: Path, **changes):
    settings = {"data": str(root), "out": str(out), "arch": "resnet10", "width": 4, "batch_size": 8, "epochs": 2,
                "at_epochs": (), "tensorboard": False, "device": "cpu"}
    return tiny_imagenet.LAB.config("smoke", **{**settings, **changes})


def test_a_60_second_budget_stops_inside_the_first_epoch_and_resume_is_exact(tiny_200, tmp_path, monkeypatch):
    clock = FakeClock(1e7)  # a machine up for months: only differences of clock readings may count
    monkeypatch.setattr(time, "perf_counter", clock)
    cache = tmp_path / "cache"
    monkeypatch.setenv("LABKIT_CACHE", str(cache))
    data = runner.load_data(tiny_imagenet.LAB, _config(tiny_200, tmp_path / "x"))
    assert data.info["num_classes"] == 200 and len(data.train) == STEPS_PER_EPOCH
    assert tuple(data.train.tensors[0].shape[1:]) == (3, 64, 64)

    whole = runner.run(tiny_imagenet.LAB, _config(tiny_200, tmp_path / "whole"), data=data, estimate=False)

    cut_cfg = _config(tiny_200, tmp_path / "cut", time_budget=60, checkpoint_minutes=0.5)
    cut = runner.run(tiny_imagenet.LAB, cut_cfg, data=data, callbacks=[StepTakesOneSecond(clock)], estimate=False)
    assert len(cut.history) == 0, "no epoch finished: the stop came inside the first one"
    reason = cut.history.stop_reason
    assert "time budget of 60 s reached (61 s) at epoch 1, step 61 of 100" in reason, reason
    assert f"resume with --resume {tmp_path / 'cut' / 'checkpoints' / 'last.pt'}" in reason

    last = tmp_path / "cut" / "checkpoints" / "last.pt"
    raw = torch.load(last, map_location="cpu", weights_only=True)  # loadable with weights_only=True
    assert raw["epoch"] == 0 and raw["partial"]["epoch"] == 1 and raw["partial"]["steps"] == 61
    assert 0 < raw["partial"]["steps"] < STEPS_PER_EPOCH, "a mid-epoch checkpoint"
    assert raw["partial"]["seconds"] == pytest.approx(61 * SECONDS_PER_STEP), "seconds of its epoch, not the clock"
    assert raw["partial"]["sums"][-1] == 61 * 8, "the running sums cover the 61 batches done"

    resumed = runner.run(tiny_imagenet.LAB, _config(tiny_200, tmp_path / "cut"), data=data, resume=last,
                         estimate=False)
    assert resumed.history.epoch == whole.history.epoch == [1, 2]
    for key in whole.history:
        if key.startswith("val_") or key == "lr":
            assert resumed.history[key] == whole.history[key], key
        elif key.startswith("train_"):  # the first 61 batches' sums come from the checkpoint (float64 totals)
            assert resumed.history[key] == pytest.approx(whole.history[key], rel=1e-12, abs=0), key
    mine, theirs = resumed.model.state_dict(), whole.model.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine), "the resumed weights are bit-identical"


def test_checkpoint_minutes_write_mid_epoch_checkpoints_on_the_fake_clock(tiny_200, tmp_path, monkeypatch):
    """--checkpoint-minutes 0.5 at one second a step: last.pt at steps 30 and 60 of the first epoch."""
    clock = FakeClock(0.0)
    monkeypatch.setattr(time, "perf_counter", clock)
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    data = runner.load_data(tiny_imagenet.LAB, _config(tiny_200, tmp_path / "x"))
    seen = []

    class Watch(Callback):
        def on_step_end(self, state) -> None:
            path = tmp_path / "run" / "checkpoints" / "last.pt"
            if state.epoch == 1 and path.is_file():
                steps = load_checkpoint(path).partial["steps"]
                if not seen or seen[-1] != steps:
                    seen.append(steps)
            if state.step == 65:
                state.stop, state.stop_reason = True, "enough"

    runner.run(tiny_imagenet.LAB, _config(tiny_200, tmp_path / "run", checkpoint_minutes=0.5, epochs=1), data=data,
               callbacks=[StepTakesOneSecond(clock), Watch()], estimate=False)
    assert seen[:2] == [30, 60]
