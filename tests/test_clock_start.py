"""Nothing in labkit treats a monotonic clock's value as meaningful.

`time.perf_counter()` counts from an arbitrary start (seconds since boot on Linux): on a machine booted
a minute ago it reads about 60, on a long-running one millions. Only differences from a reading are
meaningful. These tests run the clock users from a clock that starts at 0 (just booted) and from one
that starts at 10**7 (up for months), and expect the same behaviour.
"""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from labkit.callbacks import FitState, TimeBudget
from labkit.checkpoint import CheckpointPolicy, load_checkpoint
from labkit.history import History


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=[0.0, 1e7], ids=["just-booted", "up-for-months"])
def clock(request, monkeypatch):
    fake = FakeClock(request.param)
    monkeypatch.setattr(time, "perf_counter", fake)
    return fake


def _state() -> FitState:
    model = nn.Linear(1, 1)
    return FitState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scheduler=None,
                    history=History(), epoch=1, epochs=3, monitor="train_loss")


def test_a_fresh_state_has_no_epoch_start_and_zero_epoch_seconds(clock):
    state = _state()
    assert state.epoch_started is None and state.epoch_seconds() == 0.0
    state.epoch_started = clock.now
    clock.now += 2.5
    assert state.epoch_seconds() == pytest.approx(2.5)


def test_a_mid_epoch_checkpoint_records_the_seconds_of_its_epoch_not_the_clock(clock, tmp_path):
    policy = CheckpointPolicy(tmp_path)
    state = _state()
    path = policy.save_mid_epoch(state)  # outside fit(): no epoch start was recorded
    assert load_checkpoint(path, state.model).partial["seconds"] == 0.0
    state.epoch_started = clock.now
    clock.now += 4.0
    path = policy.save_mid_epoch(state)
    assert load_checkpoint(path, state.model).partial["seconds"] == pytest.approx(4.0)


def test_checkpoints_every_seconds_count_from_the_first_step(clock, tmp_path):
    policy = CheckpointPolicy(tmp_path, every_seconds=3600)
    state = _state()
    state.step = 1
    policy.on_step_end(state)  # without on_fit_start: counts from here, writes nothing yet
    assert not (tmp_path / "last.pt").exists()
    clock.now += 3600
    policy.on_step_end(state)
    assert (tmp_path / "last.pt").exists()


def test_a_time_budget_counts_from_the_fit_start(clock):
    budget = TimeBudget(3600)
    state = _state()
    budget.on_fit_start(state)
    budget.on_step_end(state)
    assert not state.stop
    clock.now += 3601
    budget.on_step_end(state)
    assert state.stop and "time budget of 3600 s" in state.stop_reason
