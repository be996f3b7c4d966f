"""One reusable training panel: an epochs slider, a log-scale learning-rate slider and a Train button.

`show()` trains the default configuration once, in its cell (a headless run raises there); a click retrains
with the slider values and shows its errors in the panel. A notebook reopened without its kernel cannot show
widgets, so each run also leaves plain outputs under the panel (the plot as PNG and a result line, replaced by
the next run); the live plot in the panel is shown only while a run trains, so the plot appears once."""

from __future__ import annotations

import html
import math
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from labkit.plots import DisplaySlot, LivePlot, final_metrics, in_notebook
from labkit.runner import LongRunError, allow_long_runs

#: train_fn(epochs, lr, plot) -> anything (usually a History); pass `callbacks=[plot]` to fit()
TrainFn = Callable[[int, float, LivePlot], Any]


class TrainingPanel:
    """Sliders for epochs and learning rate plus a Train button around `train_fn(epochs, lr, plot)`.
    `epoch_choices`: the values the epochs slider offers (e.g. [100, 1000, 10000]), or a (min, max, step)
    triple for a linear slider; `lr_range`: the (low, high) of the log slider. `epochs` and `lr` outside
    them are refused (a slider would clamp them silently)."""

    def __init__(self, train_fn: TrainFn, *, epochs: int, lr: float,
                 epoch_choices: Sequence[int] | tuple[int, int, int] | None = None,
                 lr_range: tuple[float, float] = (1e-4, 1.0), title: str = "Train") -> None:
        import ipywidgets as w

        self.train_fn, self.result, self.error, self.runs = train_fn, None, None, 0
        epoch_choices = epoch_choices or (1, max(epochs * 4, 10), 1)
        linear = isinstance(epoch_choices, tuple) and len(epoch_choices) == 3
        low, high = epoch_choices[:2] if linear else (1, float("inf"))
        if not low <= epochs <= high:
            raise ValueError(f"epochs={epochs} is outside the epochs slider's range "
                             + (f"{low} to {high}" if linear else "(at least 1)") + ": pass a value inside it.")
        if not lr_range[0] <= lr <= lr_range[1]:
            raise ValueError(f"lr={lr:g} is outside the learning-rate slider's range {lr_range[0]:g} to "
                             f"{lr_range[1]:g}: pass a value inside it, or widen lr_range.")
        slider = {"description": "epochs", "continuous_update": False}
        if linear:
            self.epochs = w.IntSlider(value=epochs, min=low, max=high, step=epoch_choices[2], **slider)
        else:
            options = sorted({int(e) for e in epoch_choices} | {int(epochs)})
            self.epochs = w.SelectionSlider(options=options, value=int(epochs), **slider)
        low, high = lr_range
        self.lr = w.FloatLogSlider(value=lr, base=10, min=math.log10(low), max=math.log10(high), step=0.25,
                                   description="learning rate", readout_format=".0e",
                                   style={"description_width": "initial"}, continuous_update=False)
        self.button = w.Button(description="Train", button_style="primary", icon="play")
        self.status = w.HTML(value="")
        # At its natural size (a flex column would stretch the PNG and blur it); shown only while a run trains.
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%", align_self="flex-start", display="none"))
        self.output = w.Output()
        self.plot = LivePlot(image=self.image, every_seconds=0.5)
        self.result_line = ""  # the last run's, as shown under the panel ("trained 2000 epochs at lr 0.005 ...")
        self._static_plot, self._static_line = DisplaySlot(), DisplaySlot()  # plain copies: a kernel-less reopen
        self.button.on_click(lambda _button: self._clicked())
        self.widget = w.VBox([w.HTML(f"<b>{title}</b>"), w.HBox([self.epochs, self.lr, self.button]), self.status,
                              self.image, self.output])

    def train(self, epochs: int | None = None, lr: float | None = None) -> Any:
        """Train with the given (or the sliders') values; errors propagate to the caller."""
        epochs = int(self.epochs.value if epochs is None else epochs)
        lr = float(self.lr.value if lr is None else lr)
        self.button.disabled = True
        self.status.value = f"training {epochs} epochs at lr {lr:g} ..."
        draws, start = self.plot.draws, time.perf_counter()
        self.image.layout.display = None  # the live plot, while this run trains
        if in_notebook() and self._static_plot.shown:
            self._static_plot.show_text("")
        try:
            self.output.clear_output(wait=True)
            with self.output:
                self.result = self.train_fn(epochs, lr, self.plot)
            self.runs += 1
            summary = final_metrics(self.result)
            self.result_line = (f"trained {epochs} epochs at lr {lr:g} in {time.perf_counter() - start:.1f} s"
                                + (f": final {summary}" if summary else ""))
            self.status.value = html.escape(self.result_line)
            return self.result
        except BaseException as err:
            self.result_line = f"training {epochs} epochs at lr {lr:g} failed: {type(err).__name__}: {err}"
            self.status.value = f"<span style='color:#b00'>{html.escape(self.result_line)}</span>"
            raise
        finally:
            self.button.disabled = False
            self.image.layout.display = "none"
            if in_notebook():  # the plain copies; a run that drew nothing (it failed first) leaves no older plot
                if self.plot.draws > draws and self.plot.png is not None:
                    self._static_plot.show_png(self.plot.png)
                else:
                    self._static_plot.show_text("")
                self._static_line.show_text(self.result_line)

    def _clicked(self) -> None:
        try:
            self.error = None
            with allow_long_runs():  # a click is the student's go-ahead, whatever the estimate
                self.train()
        except Exception as err:  # noqa: BLE001 - a callback cannot raise into the notebook: show it instead
            self.error = err
            with self.output:
                traceback.print_exc()

    def show(self, train_now: bool = True) -> TrainingPanel:
        from IPython.display import display

        display(self.widget)
        # the plain copies' places under the panel, made while this cell runs (a click's outputs would not reach it)
        if not self._static_plot.shown:
            self._static_plot.show_text("")
        if not self._static_line.shown:
            self._static_line.show_text("not trained yet: press Train")
        if train_now:
            try:
                self.train()
            except LongRunError as err:  # too long to start by itself: show the estimate, wait for Train
                self.result_line = f"not started: {err.estimate}. Press Train to start it."
                self.status.value = html.escape(self.result_line)
                self._static_line.show_text(self.result_line)
        return self
