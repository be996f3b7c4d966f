"""Callbacks: small objects the engine calls at the start, after each epoch, and at the end.

`FitState` is what they see. `EarlyStopping` derives its state from the History,
so a resumed run stops exactly where an uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from labkit.history import History, metric_mode


@dataclass
class FitState:
    """The run as callbacks see it. Setting `stop = True` ends training after this epoch."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None
    scheduler: Any
    history: History
    epoch: int
    epochs: int
    monitor: str
    config: dict[str, Any] = field(default_factory=dict)
    device: torch.device | None = None
    is_main: bool = True
    stop: bool = False
    scaler: Any = None  # the GradScaler (checkpoints save its state when it is enabled)
    #: inside an epoch: optimizer steps done, the running sums, the epoch's lr and its start as a
    #: time.perf_counter() reading (None outside an epoch: the clock's value alone means nothing, it
    #: counts from boot on Linux, so only differences from a reading are used)
    step: int = 0
    sums: Any = None
    epoch_lr: float = 0.0
    epoch_started: float | None = None
    #: set by a callback's on_step_end to stop inside the epoch (a mid-epoch checkpoint is written)
    stop_now: bool = False
    stop_reason: str = ""
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def epoch_seconds(self) -> float:
        """Seconds since the current epoch started (0 outside an epoch)."""
        return 0.0 if self.epoch_started is None else time.perf_counter() - self.epoch_started


class Callback:
    """Override what you need; every hook receives the FitState."""

    def on_fit_start(self, state: FitState) -> None:
        pass

    def on_epoch_end(self, state: FitState) -> None:
        pass

    def on_step_end(self, state: FitState) -> None:
        """After every optimizer step (only callbacks that override it are called per step)."""

    def on_fit_end(self, state: FitState) -> None:
        pass


@dataclass
class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs.

    `monitor` defaults to the run's monitored metric (val_loss when there is a
    validation set). Mode is 'min' for losses/perplexity, 'max' otherwise.
    """

    monitor: str | None = None
    patience: int = 3
    mode: str | None = None
    min_delta: float = 0.0

    def epochs_without_improvement(self, history: History, key: str) -> int:
        mode = self.mode or metric_mode(key)
        best = math.inf if mode == "min" else -math.inf
        waited = 0
        for value in history[key]:
            better = value < best - self.min_delta if mode == "min" else value > best + self.min_delta
            if math.isfinite(value) and better:
                best, waited = value, 0
            else:
                waited += 1
        return waited

    def on_epoch_end(self, state: FitState) -> None:
        key = self.monitor or state.monitor
        if key not in state.history:
            raise KeyError(
                f"EarlyStopping monitors {key!r} but the run records {state.history.keys()}: "
                "pass eval_data to fit() or monitor a train metric."
            )
        waited = self.epochs_without_improvement(state.history, key)
        if waited >= self.patience:
            best_epoch, best_value = state.history.best(key, self.mode)
            state.stop = True
            state.history.stop_reason = (
                f"early stopping at epoch {state.epoch} of {state.epochs}: no {key} improvement for "
                f"{waited} epochs (best {best_value:.4g} at epoch {best_epoch})"
            )


class TimeBudget(Callback):
    """Stop when `seconds` of training have passed: inside an epoch once the budget is spent (the run
    writes a mid-epoch checkpoint to resume from), or after an epoch when another epoch (at the mean
    epoch time so far) would not fit."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self._start: float | None = None
        self._epochs = 0

    def on_fit_start(self, state: FitState) -> None:
        self._start = time.perf_counter()
        self._epochs = 0

    def _elapsed(self) -> float:
        if self._start is None:  # used without on_fit_start: count from the first call
            self._start = time.perf_counter()
        return time.perf_counter() - self._start

    def on_step_end(self, state: FitState) -> None:
        elapsed = self._elapsed()
        if elapsed > self.seconds:
            state.stop_now = True
            state.stop_reason = f"time budget of {self.seconds:.0f} s reached ({elapsed:.0f} s)"

    def on_epoch_end(self, state: FitState) -> None:
        self._epochs += 1
        elapsed = self._elapsed()
        if elapsed + elapsed / self._epochs > self.seconds and state.epoch < state.epochs:
            state.stop = True
            state.history.stop_reason = (f"time budget of {self.seconds:.0f} s reached after epoch "
                                         f"{state.epoch} ({elapsed:.0f} s)")
