"""Training curves and figures: static plots saved as PNG, and a live plot redrawn in place in a notebook (as plain
outputs through IPython display handles, so any viewer shows them without a kernel, unlike a widget)."""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from labkit.callbacks import Callback, FitState
from labkit.history import History

SPLIT_STYLE = {"train": "-", "val": "--", "test": ":"}


def metric_groups(history: History, keys: Sequence[str] | None = None) -> dict[str, list[str]]:
    """{'loss': ['train_loss', 'val_loss'], 'accuracy': [...]} in the order metrics appear (keys the History has)."""
    groups: dict[str, list[str]] = {}
    for key in keys or history.keys():
        if key in history.metrics:
            groups.setdefault(key.partition("_")[2] or key, []).append(key)
    return groups


def plot_history(history: History, keys: Sequence[str] | None = None, path: str | os.PathLike | None = None,
                 title: str | None = None, mark_epochs: Sequence[float] = (), mark_label: str = "",
                 log_loss: bool | None = None, figure: Figure | None = None,
                 split_labels: Mapping[str, str] | None = None) -> Figure:
    """One panel per metric (train/val/test overlaid); vertical lines at `mark_epochs`; PNG if `path`.
    `split_labels` renames splits in the legends, e.g. {"test": "hold-out (5,000 of train)"}. Keys the History
    lacks are left out; with none left (no epoch finished) the figure says so."""
    groups = metric_groups(history, keys)
    fig = figure or new_figure((4.2 * max(len(groups), 1), 3.2))
    fig.clear()
    axes = fig.subplots(1, max(len(groups), 1), squeeze=False)[0]
    if not groups:
        axes[0].axis("off")
        axes[0].text(0.5, 0.5, "no epoch finished: nothing to plot", ha="center", va="center")
    for ax, (metric, members) in zip(axes, groups.items()):
        for key in members:
            split = key.partition("_")[0]  # epoch[:len]: a run that diverged has one train value more than val
            ax.plot(history.epoch[:len(history[key])], history[key], SPLIT_STYLE.get(split, "-"), markersize=3,
                    label=(split_labels or {}).get(split, split), marker="o" if len(history) <= 12 else None)
        for i, x in enumerate(mark_epochs):
            ax.axvline(x, color="grey", lw=1, ls="-.", label=mark_label if i == 0 and mark_label else None)
        values = [v for k in members for v in history[k] if math.isfinite(v)]
        wants_log = log_loss if log_loss is not None else (
            "loss" in metric and values and min(values) > 0 and max(values) / min(values) > 100)
        if wants_log:
            ax.set_yscale("log")
        _style(ax, metric)
    if title:
        fig.suptitle(title)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_curves(histories: Mapping[str, History], key: str, path: str | os.PathLike | None = None,
                title: str | None = None, ax: Any = None) -> Figure:
    """Overlay one metric (e.g. 'val_accuracy') of several runs, for comparisons and ablations."""
    fig = ax.figure if ax is not None else new_figure((6, 3.6))
    ax = ax or fig.subplots()
    for (name, history), color in zip(histories.items(), series_colors(len(histories))):
        if key in history:
            ax.plot(history.epoch[:len(history[key])], history[key], label=name, color=color,
                    marker="o" if len(history) <= 12 else None, markersize=3)
    ax.set_ylabel(key)
    _style(ax, title or key)
    if path is not None:
        save_figure(fig, path)
    return fig


def _style(ax: Any, title: str) -> None:
    integer_epochs(ax)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def new_figure(figsize: tuple[float, float] = (6, 4)) -> Figure:
    """A figure that `plt.show()` displays in a notebook; a bare Figure (no pyplot state) elsewhere."""
    if in_notebook():
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize, layout="constrained")
    return Figure(figsize=figsize, layout="constrained")


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> None:
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    fig.savefig(path, dpi=dpi)


def final_metrics(result: Any) -> str:
    """'train_loss 0.0123, val_accuracy 0.75' from a History (or an object with `.history`): the last
    value of up to three losses, accuracies or perplexities, and why the run stopped early if it did."""
    history = getattr(result, "history", result)
    if not (hasattr(history, "keys") and hasattr(history, "epoch") and len(history)):
        return ""
    shown = [k for k in list(history.keys()) if k.endswith(("loss", "accuracy", "perplexity"))][:3]
    text = ", ".join(f"{k} {history[k][-1]:.4g}" for k in shown)
    if getattr(history, "stop_reason", None):
        text += f" · {history.stop_reason}"
    return text


class DisplaySlot:
    """One plain output in a notebook cell, replaced in place by each later `show` (a display handle): the first
    `show` must run while the cell runs, later ones may come from a widget callback. Outside a kernel: nothing."""

    def __init__(self) -> None:
        self._handle: Any = None

    @property
    def shown(self) -> bool:
        return self._handle is not None

    def show(self, obj: Any, raw: bool = False) -> None:
        """Display `obj` (an IPython display object, or a mime bundle dict with `raw=True`)."""
        if not in_notebook():
            return
        from IPython.display import display

        if self._handle is None:
            self._handle = display(obj, raw=raw, display_id=True)
        else:
            self._handle.update(obj, raw=raw)

    def show_text(self, text: str) -> None:
        self.show({"text/plain": text}, raw=True)

    def show_png(self, png: bytes) -> None:
        from IPython.display import Image

        self.show(Image(data=png, format="png"))


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where display() reaches a front end)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class LivePlot(Callback):
    """Redraw the run's curves (History `keys`, default all) in one output area while it trains, at most every
    `every_seconds` (the first and last epochs always). Into `image` (an `ipywidgets.Image`: the TrainingPanel's),
    else as a plain PNG output updated in place with the final metrics under it at the end; `path`: also save
    the final figure there."""

    def __init__(self, keys: Sequence[str] | None = None, image: Any = None, every_seconds: float = 1.0,
                 path: str | os.PathLike | None = None, title: str | None = None) -> None:
        self.keys, self.image, self.every_seconds, self.path, self.title = keys, image, every_seconds, path, title
        self.figure: Figure | None = None
        self.png: bytes | None = None  # the last drawn plot (None until drawn into a widget or a notebook)
        self._picture, self._caption = DisplaySlot(), DisplaySlot()
        self._last: float | None = None  # perf_counter() of this fit's last draw (only differences mean anything)
        self._gap, self.draws = every_seconds, 0

    def on_fit_start(self, state: FitState) -> None:
        self._last, self._gap, self.figure = None, self.every_seconds, None

    def on_epoch_end(self, state: FitState) -> None:
        if self._last is None or time.perf_counter() - self._last >= self._gap:
            self.draw(state.history)

    def on_fit_end(self, state: FitState) -> None:
        if len(state.history):
            self.draw(state.history)
            if self.path is not None and self.figure is not None:
                save_figure(self.figure, self.path)
            if self.image is None and self._picture.shown:
                self._caption.show_text(f"trained {len(state.history)} epochs: final "
                                        f"{final_metrics(state.history) or 'no metrics'}")

    def draw(self, history: History) -> None:
        """Redraw now. The next throttled redraw waits `every_seconds`, or 3x this draw's duration when
        drawing is slower than that (a loaded machine), so drawing takes at most a quarter of the run."""
        self._last = started = time.perf_counter()
        if self.image is None and not in_notebook() and self.path is None:
            return
        if self.figure is None:
            groups = max(len(metric_groups(history, self.keys)), 1)
            self.figure = Figure(figsize=(4.2 * groups, 3.2), layout="constrained")
        self.figure = plot_history(history, self.keys, title=self.title, figure=self.figure)
        self.draws += 1
        if self.image is not None or in_notebook():
            buffer = io.BytesIO()
            self.figure.savefig(buffer, format="png", dpi=90)
            self.png = buffer.getvalue()
            if self.image is not None:
                self.image.value = self.png
            else:
                self._picture.show_png(self.png)
        self._last = time.perf_counter()
        self._gap = max(self.every_seconds, 3 * (self._last - started))


def integer_epochs(ax: Any) -> None:
    """Label an epoch axis with whole epochs only (no 1.5, 2.5; a one-epoch run gets the single tick 1, not
    0.945 … 1.065: `min_n_ticks=1` stops the locator falling back to fractions)."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def series_colors(n: int) -> list[Any]:
    """n distinct colours, so one series keeps its colour across the panels of a figure."""
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def image_grid(images: Any, titles: Sequence[str] = (), ncols: int = 8, title: str = "",
               path: str | os.PathLike | None = None, cell: float = 1.2, empty: str = "nothing to show") -> Figure:
    """Images (N, H, W) grey or (N, 3, H, W) colour, uint8 or float, in a grid with a caption under each
    (one axes per image); without captions tiled by `torchvision.utils.make_grid`. An empty set shows `empty`."""
    images = torch.as_tensor(images).detach().cpu()
    n = len(images)
    images = images.unsqueeze(1) if images.dim() == 3 else images
    grey = n and images.shape[1] == 1
    if n == 0:
        fig = new_figure((5, 1.6))
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, empty, ha="center", va="center", fontsize=11)
    elif not titles:
        from torchvision.utils import make_grid

        tiled = make_grid(images.float() / (255 if images.dtype == torch.uint8 else 1), nrow=ncols, pad_value=1.0)
        fig = new_figure((cell * min(n, ncols), cell * math.ceil(n / ncols) + (0.4 if title else 0)))
        ax = fig.subplots()
        ax.imshow(tiled.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        ax.axis("off")
    else:
        ncols, nrows = min(ncols, n), math.ceil(n / min(ncols, n))
        fig = new_figure((cell * ncols, cell * 1.2 * nrows + (0.4 if title else 0)))
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for i, ax in enumerate(axes):
            ax.axis("off")
            if i >= n:
                continue
            image = images[i]
            if grey:
                ax.imshow(image[0].numpy(), cmap="gray_r" if image.dtype == torch.uint8 else "gray",
                          vmin=0, vmax=255 if image.dtype == torch.uint8 else None)
            else:
                shown = image.permute(1, 2, 0).numpy()
                ax.imshow(shown if image.dtype == torch.uint8 else shown.clip(0, 1), interpolation="nearest")
            if i < len(titles):
                ax.set_title(titles[i], fontsize=7)
    if title:  # an empty grid's one axes carries the title itself
        fig.axes[0].set_title(title) if n == 0 else fig.suptitle(title)
    if path is not None:
        save_figure(fig, path)
    return fig
