"""Training curves: a live plot for notebooks and static figures saved as PNG.

Figures are made with matplotlib's object API (no pyplot state), rendered to PNG
and shown in one output area that is redrawn in place, at most every
`every_seconds`, so a 50,000-epoch run is not slowed by drawing.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from labkit.callbacks import Callback, FitState
from labkit.history import History

SPLIT_STYLE = {"train": "-", "val": "--", "test": ":"}


def metric_groups(history: History, keys: Sequence[str] | None = None) -> dict[str, list[str]]:
    """{'loss': ['train_loss', 'val_loss'], 'accuracy': [...]} in the order metrics appear."""
    groups: dict[str, list[str]] = {}
    for key in keys or history.keys():
        _, _, metric = key.partition("_")
        groups.setdefault(metric or key, []).append(key)
    return groups


def plot_history(
    history: History,
    keys: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
    title: str | None = None,
    mark_epochs: Sequence[float] = (),
    mark_label: str = "",
    log_loss: bool | None = None,
    figure: Figure | None = None,
) -> Figure:
    """One panel per metric (train/val/test overlaid); vertical lines at `mark_epochs`; PNG if `path`."""
    groups = metric_groups(history, keys)
    fig = figure or new_figure((4.2 * max(len(groups), 1), 3.2))
    fig.clear()
    axes = fig.subplots(1, max(len(groups), 1), squeeze=False)[0]
    for ax, (metric, members) in zip(axes, groups.items()):
        for key in members:
            split = key.partition("_")[0]
            ax.plot(history.epoch, history[key], SPLIT_STYLE.get(split, "-"), label=split)
        for i, x in enumerate(mark_epochs):
            ax.axvline(x, color="grey", lw=1, ls="-.", label=mark_label if i == 0 and mark_label else None)
        values = [v for k in members for v in history[k] if math.isfinite(v)]
        wants_log = log_loss if log_loss is not None else (
            "loss" in metric and values and min(values) > 0 and max(values) / min(values) > 100)
        if wants_log:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_curves(
    histories: Mapping[str, History],
    key: str,
    path: str | os.PathLike | None = None,
    title: str | None = None,
    ax: Any = None,
) -> Figure:
    """Overlay one metric (e.g. 'val_accuracy') of several runs, for comparisons and ablations."""
    fig = ax.figure if ax is not None else new_figure((6, 3.6))
    ax = ax or fig.subplots()
    for name, history in histories.items():
        ax.plot(history.epoch, history[key], label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.set_title(title or key)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if path is not None:
        save_figure(fig, path)
    return fig


def new_figure(figsize: tuple[float, float] = (6, 4)) -> Figure:
    """A figure that `plt.show()` displays in a notebook; a bare Figure (no pyplot state) elsewhere."""
    if in_notebook():
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize, layout="constrained")
    return Figure(figsize=figsize, layout="constrained")


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> None:
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    fig.savefig(path, dpi=dpi)


def render_png(fig: Figure, dpi: int = 90) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where display() reaches a front end)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class LivePlot(Callback):
    """Redraw the run's curves in one output area while it trains.

    Args:
        keys: History keys to draw (default: all).
        image: an `ipywidgets.Image` to draw into (the TrainingPanel passes its own);
            otherwise a display handle in the notebook is updated in place.
        every_seconds: minimum time between redraws (the last epoch is always drawn).
        path: also save the final figure here as PNG.
    """

    def __init__(self, keys: Sequence[str] | None = None, image: Any = None, every_seconds: float = 1.0,
                 path: str | os.PathLike | None = None, title: str | None = None) -> None:
        self.keys = keys
        self.image = image
        self.every_seconds = every_seconds
        self.path = path
        self.title = title
        self.figure: Figure | None = None
        self._handle: Any = None
        # perf_counter() of the last draw; None until this fit draws. The clock's absolute value means
        # nothing (it counts from boot on Linux), so only differences from a reading are compared.
        self._last: float | None = None
        self._gap = every_seconds
        self.draws = 0

    def on_fit_start(self, state: FitState) -> None:
        self._last = None
        self._gap = self.every_seconds
        self.figure = None

    def on_epoch_end(self, state: FitState) -> None:
        # The first epoch of a fit always draws; later ones wait `_gap` after the last draw.
        if self._last is None or time.perf_counter() - self._last >= self._gap:
            self.draw(state.history)

    def on_fit_end(self, state: FitState) -> None:
        if len(state.history):
            self.draw(state.history)
            if self.path is not None and self.figure is not None:
                save_figure(self.figure, self.path)

    def draw(self, history: History) -> None:
        """Redraw now. The next throttled redraw waits `every_seconds`, or 3x this draw's duration when
        drawing is slower than that (a loaded machine), so drawing takes at most a quarter of the run."""
        started = time.perf_counter()
        self._last = started
        if self.image is None and not in_notebook() and self.path is None:
            return
        if self.figure is None:
            groups = max(len(metric_groups(history, self.keys)), 1)
            self.figure = Figure(figsize=(4.2 * groups, 3.2), layout="constrained")
        self.figure = plot_history(history, self.keys, title=self.title, figure=self.figure)
        self.draws += 1
        if self.image is not None:
            self.image.value = render_png(self.figure)
        elif in_notebook():
            from IPython.display import Image, display

            picture = Image(data=render_png(self.figure), format="png")
            if self._handle is None:
                self._handle = display(picture, display_id=True)
            else:
                self._handle.update(picture)
        self._last = time.perf_counter()
        self._gap = max(self.every_seconds, 3 * (self._last - started))
