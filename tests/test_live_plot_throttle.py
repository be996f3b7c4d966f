"""LivePlot redraws at most every `every_seconds`, and backs off when drawing itself is slow."""

from __future__ import annotations

import time
from itertools import pairwise
from types import SimpleNamespace

import torch

from labkit.callbacks import FitState
from labkit.history import History
from labkit.plots import LivePlot


class _Image:
    """Stands in for an ipywidgets.Image: counts the PNGs it receives."""

    def __init__(self) -> None:
        self.updates = 0

    @property
    def value(self) -> bytes:
        return b""

    @value.setter
    def value(self, png: bytes) -> None:
        assert png.startswith(b"\x89PNG")
        self.updates += 1


def _run(plot: LivePlot, epochs: int, seconds_per_epoch: float) -> History:
    history = History()
    state = FitState(model=torch.nn.Linear(1, 1), optimizer=None, scheduler=None, history=history,
                     epoch=0, epochs=epochs, monitor="train_loss")
    plot.on_fit_start(state)
    for epoch in range(1, epochs + 1):
        time.sleep(seconds_per_epoch)
        history.append(epoch, 0.1, seconds_per_epoch, {"train_loss": 1.0 / epoch})
        state.epoch = epoch
        plot.on_epoch_end(state)
    plot.on_fit_end(state)
    return history


def test_slow_drawing_is_not_repeated_every_epoch(monkeypatch):
    """When one draw takes longer than every_seconds, the next waits 3x the draw time (was: every epoch)."""
    from labkit import plots

    real = plots.plot_history

    def slow_plot_history(*args, **kwargs):
        time.sleep(0.05)
        return real(*args, **kwargs)

    monkeypatch.setattr(plots, "plot_history", slow_plot_history)
    image = _Image()
    plot = LivePlot(image=image, every_seconds=0.001)
    start = time.perf_counter()
    _run(plot, epochs=60, seconds_per_epoch=0.002)
    elapsed = time.perf_counter() - start
    drawing = plot.draws * 0.05
    assert image.updates == plot.draws >= 2  # first epoch and last epoch at least
    assert plot.draws < 30, f"{plot.draws} draws in 60 epochs: drawing is not throttled"
    assert drawing < 0.5 * elapsed


def test_fast_drawing_follows_every_seconds():
    image = _Image()
    plot = LivePlot(image=image, every_seconds=3600)
    _run(plot, epochs=20, seconds_per_epoch=0)
    assert plot.draws == 2  # the first epoch, then only the final redraw at the end of fit


class _Clock:
    """A perf_counter that starts at 0.0 (a machine booted a moment ago): `now` is set by the test, or
    advanced by `tick` on every reading."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now = 0.0
        self.tick = tick

    def __call__(self) -> float:
        reading = self.now
        self.now += self.tick
        return reading


def _drawn_epochs(monkeypatch, plot: LivePlot, clock: _Clock, epochs: int, seconds_per_epoch: float) -> list[int]:
    """Run a fit on `clock`; the epochs at which the plot was drawn."""
    from labkit import plots

    # Only labkit.plots sees the fake clock (patching time.perf_counter itself would also feed it to
    # matplotlib and pytest).
    monkeypatch.setattr(plots, "time", SimpleNamespace(perf_counter=clock))
    drawn: list[int] = []
    real_draw = plot.draw

    def draw(history: History) -> None:
        drawn.append(len(history))
        real_draw(history)

    plot.draw = draw
    history = History()
    state = FitState(model=torch.nn.Linear(1, 1), optimizer=None, scheduler=None, history=history,
                     epoch=0, epochs=epochs, monitor="train_loss")
    plot.on_fit_start(state)
    for epoch in range(1, epochs + 1):
        history.append(epoch, 0.1, seconds_per_epoch, {"train_loss": 1.0 / epoch})
        state.epoch = epoch
        plot.on_epoch_end(state)
        clock.now += seconds_per_epoch
    plot.on_fit_end(state)
    return drawn


def test_first_epoch_draws_on_a_clock_that_starts_at_zero(monkeypatch):
    """perf_counter() counts from boot: right after boot it is below every_seconds. The first epoch
    still draws, and later draws are every_seconds after the previous one, not after clock zero."""
    image = _Image()
    plot = LivePlot(image=image, every_seconds=0.5)
    # epoch k ends at (k - 1) * 0.125 s; drawing takes no time on this clock
    drawn = _drawn_epochs(monkeypatch, plot, _Clock(), epochs=20, seconds_per_epoch=0.125)
    assert drawn == [1, 5, 9, 13, 17, 20]  # the first epoch, then every 0.5 s, then the end of fit
    assert image.updates == plot.draws == 6

    # A second fit with the same plot starts afresh: its first epoch draws too.
    assert _drawn_epochs(monkeypatch, plot, _Clock(), epochs=3, seconds_per_epoch=0.125)[0] == 1


def test_throttle_on_a_ticking_clock_from_zero(monkeypatch):
    """A clock reading 0.0, 0.125, 0.25, ... (each call a tick): the first epoch draws, and each
    throttled redraw starts at least every_seconds after the previous draw ended."""
    clock = _Clock(tick=0.125)
    readings: list[float] = []
    real_draw = LivePlot.draw

    def draw(self, history):
        readings.append(clock.now)
        real_draw(self, history)

    monkeypatch.setattr(LivePlot, "draw", draw)
    plot = LivePlot(image=_Image(), every_seconds=1.0)
    drawn = _drawn_epochs(monkeypatch, plot, clock, epochs=40, seconds_per_epoch=0.0)
    assert drawn[0] == 1 and drawn[-1] == 40
    throttled = readings[:-1]  # the last one is on_fit_end's unconditional redraw
    assert len(throttled) >= 3
    # each draw reads the clock twice (start, end): the next may start every_seconds after that end
    assert all(b - (a + 0.125) >= 1.0 for a, b in pairwise(throttled)), readings
    assert len(drawn) < 10
