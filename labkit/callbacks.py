"""Callbacks: what `fit()` does besides training — progress, early stopping, time budgets, signals. Hooks run in
`Callback.order`; setting `state.stop` in `on_step_end` stops inside the epoch (a `CheckpointPolicy` then writes a
mid-epoch checkpoint), in `on_epoch_end` after it."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from labkit import config as _config
from labkit import distributed
from labkit.history import History, metric_mode


@dataclass
class FitState:
    """The run as callbacks see it. `stop = True` ends it (with `stop_reason`, see the module docstring)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None
    scheduler: Any
    history: History
    epoch: int
    epochs: int
    monitor: str
    is_main: bool = True
    scaler: Any = None  # the GradScaler (checkpoints save its state when it is enabled)
    #: inside an epoch: optimizer steps done, the running sums, the epoch's lr and its perf_counter() start
    step: int = 0
    sums: Any = None
    epoch_lr: float = 0.0
    epoch_started: float | None = None
    stop: bool = False
    stop_reason: str = ""

    def epoch_seconds(self) -> float:  # 0 outside an epoch
        return 0.0 if self.epoch_started is None else time.perf_counter() - self.epoch_started

    @property
    def stopped_mid_epoch(self) -> bool:  # a stop inside `epoch` (it has no History row)
        return self.stop and (self.history.epoch[-1] if len(self.history) else 0) < self.epoch


class Callback:
    """Override what you need; every hook receives the FitState. Lower `order` runs first."""

    order = 0

    def on_fit_start(self, state: FitState) -> None: ...
    def on_step_end(self, state: FitState) -> None: ...  # after every optimizer step (only overriders are called)
    def on_epoch_end(self, state: FitState) -> None: ...
    def on_fit_end(self, state: FitState) -> None: ...


def overriding(callbacks: list[Callback], hook: str) -> list[Callback]:
    """The callbacks whose class overrides `hook` (fit calls only those)."""
    return [cb for cb in callbacks if getattr(type(cb), hook) is not getattr(Callback, hook)]


@dataclass
class EarlyStopping(Callback):
    """Stop when `monitor` (default: the run's, val_loss with a validation set) has not improved by `min_delta`
    for `patience` epochs. Its state comes from the History, so a resumed run stops where a whole one would."""

    monitor: str | None = None
    patience: int = 3
    mode: str | None = None
    min_delta: float = 0.0

    def epochs_without_improvement(self, history: History, key: str) -> int:
        sign = 1 if (self.mode or metric_mode(key)) == "min" else -1
        best, waited = math.inf, 0
        for value in history[key]:
            if math.isfinite(value) and sign * value < best - self.min_delta:
                best, waited = sign * value, 0
            else:
                waited += 1
        return waited

    def on_epoch_end(self, state: FitState) -> None:
        key = self.monitor or state.monitor
        if key not in state.history:
            raise KeyError(f"EarlyStopping monitors {key!r} but the run records {state.history.keys()}: "
                           "pass eval_data to fit() or monitor a train metric.")
        if (waited := self.epochs_without_improvement(state.history, key)) >= self.patience:
            best_epoch, best_value = state.history.best(key, self.mode)
            state.stop, state.stop_reason = True, (
                f"early stopping at epoch {state.epoch} of {state.epochs}: no {key} improvement for "
                f"{waited} epochs (best {best_value:.4g} at epoch {best_epoch})")


class TimeBudget(Callback):
    """Stop when `seconds` of training have passed: inside an epoch once the budget is spent (the run writes a mid-epoch
    checkpoint to resume from), or after an epoch when another epoch (at the mean epoch time so far) would not fit."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self._start, self._epochs = float(seconds), None, 0

    def on_fit_start(self, state: FitState) -> None:
        self._start, self._epochs = time.perf_counter(), 0

    def _elapsed(self) -> float:
        if self._start is None:  # used without on_fit_start: count from the first call
            self._start = time.perf_counter()
        return time.perf_counter() - self._start

    def on_step_end(self, state: FitState) -> None:
        if (elapsed := self._elapsed()) > self.seconds:
            state.stop, state.stop_reason = True, f"time budget of {self.seconds:.0f} s reached ({elapsed:.0f} s)"

    def on_epoch_end(self, state: FitState) -> None:
        self._epochs += 1
        elapsed = self._elapsed()
        if elapsed + elapsed / self._epochs > self.seconds and state.epoch < state.epochs:
            state.stop, state.stop_reason = True, (f"time budget of {self.seconds:.0f} s reached after epoch "
                                                   f"{state.epoch} ({elapsed:.0f} s)")


class StopOnSignal(Callback):
    """Ctrl-C and SIGTERM during fit(): the first stops the run after the current step (a CheckpointPolicy
    then writes a mid-epoch checkpoint) and fit raises KeyboardInterrupt with the stop reason at its end;
    a second Ctrl-C stops at once, as usual. The previous handlers are restored when fit ends."""

    order = 20  # its on_fit_end raises: after every other callback has finished

    def __init__(self) -> None:
        self.requested, self._previous = False, {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def on_fit_start(self, state: FitState) -> None:
        self.requested = False
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = {sig: signal.signal(sig, self._handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_step_end(self, state: FitState) -> None:
        if self.requested:
            state.stop, state.stop_reason = True, "interrupted (Ctrl-C or SIGTERM)"

    def on_fit_end(self, state: FitState) -> None:
        while self._previous:
            signal.signal(*self._previous.popitem())
        if self.requested and state.stop:
            raise KeyboardInterrupt(state.history.stop_reason)


#: at most about this many epoch lines per fit in "lines" mode (Lab 01 fits run thousands of epochs)
MAX_EPOCH_LINES = 20


def _interactive() -> bool:
    """Where a tqdm bar redraws in place: a Jupyter front end (tqdm.auto's widget) or a terminal."""
    from tqdm.auto import tqdm as auto

    widget = any(cls.__module__ == "tqdm.notebook" for cls in auto.__mro__)  # tqdm.auto chose the widget
    return widget or bool(getattr(sys.stderr, "isatty", None) and sys.stderr.isatty())


def progress_mode(progress: bool | None) -> str:
    """How a fit shows its epochs: "bar" (a notebook or a terminal), "lines" (a line per epoch where a bar
    cannot redraw: a log file, a pipe, CI) or "quiet" (progress off, or not rank 0). None follows
    `LABKIT_PROGRESS`; False is quiet except under the `labkit` command (lines)."""
    if not distributed.is_main_process():
        return "quiet"
    enabled = _config.progress_enabled()
    wanted = enabled if progress is None else progress
    if not (wanted or (progress is False and _config.terminal_command() and enabled)):
        return "quiet"
    return "bar" if progress is not False and _interactive() else "lines"


def _bar(iterable: Any, enabled: bool, **kwargs: Any) -> Any:
    """A tqdm.auto bar (a widget in Jupyter, text in a terminal) or the bare iterable."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=False, mininterval=0.5, dynamic_ncols=True, **kwargs)


class Progress(Callback):
    """The epochs of one fit as a bar, a line per epoch, or nothing (`progress_mode`); fit() adds `Progress()` unless
    given one. `split_labels` name the splits, e.g. {"test": "hold-out (5,000 of train)"} ("hold-out accuracy"). A run
    that stops early says why once: as the bar's description (not left red unless it diverged), or as one line."""

    order = 10  # after the callbacks that stop the run or add to its stop reason

    def __init__(self, show: bool | None = None, split_labels: Mapping[str, str] | None = None) -> None:
        self.show, self.mode = show, "quiet"
        # "test" -> "hold-out" when the split named test is held out of train (the part before " (")
        self.names = {split: label.split(" (")[0] for split, label in (split_labels or {}).items()
                      if split != "train" and label}
        self.bar: Any = None
        self.lines: list[str] = []  # what "lines" mode printed (for tests and callers)

    @property
    def batch_bars(self) -> bool:  # whether fit shows a batch bar inside each (long enough) epoch and evaluation
        return self.mode == "bar"

    def on_fit_start(self, state: FitState) -> None:
        self.mode, self.start, self.epochs = progress_mode(self.show), state.epoch, state.epochs
        self.every = max(1, math.ceil(max(self.epochs - self.start, 0) / MAX_EPOCH_LINES))
        self.bar = _bar(None, True, desc="epochs", unit="epoch", total=max(self.epochs - self.start, 0)) \
            if self.mode == "bar" else None

    def on_epoch_end(self, state: FitState) -> None:
        if self.mode == "quiet":
            return
        history, epoch = state.history, state.epoch
        if self.bar is not None:
            self.bar.set_postfix({k.replace("train_", "").replace("_", " "): f"{history[k][-1]:.4g}"
                                  for k in ("train_loss", state.monitor) if k in history.metrics}, refresh=False)
            self.bar.update(1)
        elif (done := epoch - self.start) == 1 or epoch == self.epochs or done % self.every == 0:
            shown = " · ".join(f"{self.label(k)} {v[-1]:.4g}" for k, v in history.metrics.items())
            self._print(f"epoch {epoch}/{self.epochs}: {shown} ({history.seconds[-1]:.1f} s)")

    def label(self, key: str) -> str:
        """'test_accuracy' -> 'hold-out accuracy' where the test split is a hold-out; else 'test accuracy'."""
        split, _, rest = key.partition("_")
        return f"{self.names.get(split, split)} {rest.replace('_', ' ')}".strip()

    def on_fit_end(self, state: FitState) -> None:
        history = state.history
        last = history.epoch[-1] if len(history) else self.start
        stopped = bool(history.stop_reason and (history.diverged or last < self.epochs))
        reason = ("⚠ " if history.diverged else "") + (history.stop_reason or "")
        if (bar := self.bar) is not None:
            bar.n = max(last - self.start, 0)  # the epochs that ran, whatever the bar last drew
            if stopped:
                bar.set_description_str(reason, refresh=False)
            bar.refresh()
            bar.close()
            pbar = getattr(getattr(bar, "container", None), "children", [None, None])[1]
            if stopped and not history.diverged and pbar is not None:
                # tqdm's notebook bar turns red ('danger') when it closes short of its total
                pbar.bar_style = "success" if "early stopping" in reason else "warning"
        elif stopped and distributed.is_main_process():  # only rank 0 speaks under DDP
            self._print(reason)

    def _print(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)
