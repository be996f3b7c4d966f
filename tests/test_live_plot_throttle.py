"""LivePlot redraws at most every `every_seconds`, and backs off when drawing itself is slow."""

from __future__ import annotations

import time

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
