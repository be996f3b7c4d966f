"""One reusable training panel: an epochs slider, a log-scale learning-rate slider and a Train button.

`TrainingPanel(train_fn, ...).show()` displays the panel and trains the default
configuration once, synchronously, so a notebook run headless (nbval, `labkit
smoke`) still trains and any error surfaces in that cell. Later clicks on Train
retrain with the slider values; their errors are shown in the panel (a widget
callback cannot raise into a cell).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from labkit.plots import LivePlot

#: train_fn(epochs, lr, plot) -> anything (usually a History); pass `callbacks=[plot]` to fit()
TrainFn = Callable[[int, float, LivePlot], Any]


def _summary(result: Any) -> str:
    history = getattr(result, "history", result)
    if hasattr(history, "keys") and hasattr(history, "epoch") and len(history):
        shown = [k for k in history.keys() if k.endswith(("loss", "accuracy", "perplexity"))][:3]
        text = ", ".join(f"{k} {history[k][-1]:.4g}" for k in shown)
        if getattr(history, "stop_reason", None):
            text += f" · {history.stop_reason}"
        return text
    return ""


class TrainingPanel:
    """Sliders for epochs and learning rate plus a Train button around `train_fn`.

    Args:
        train_fn: called as `train_fn(epochs, lr, plot)`; give `plot` to `fit(callbacks=[plot])`.
        epochs: default epochs.
        epoch_choices: values the epochs slider offers (a list, e.g. [100, 1000, 10000, 50000]),
            or a (min, max, step) triple for a linear slider.
        lr: default learning rate.
        lr_range: (low, high) of the log slider, default 1e-4 ... 1.
        title: shown above the sliders.
    """

    def __init__(self, train_fn: TrainFn, *, epochs: int, lr: float,
                 epoch_choices: Sequence[int] | tuple[int, int, int] | None = None,
                 lr_range: tuple[float, float] = (1e-4, 1.0), title: str = "Train") -> None:
        import math

        import ipywidgets as w

        self.train_fn = train_fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.runs = 0
        if epoch_choices is None:
            epoch_choices = (1, max(epochs * 4, 10), 1)
        if isinstance(epoch_choices, tuple) and len(epoch_choices) == 3:
            low, high, step = epoch_choices
            self.epochs = w.IntSlider(value=epochs, min=low, max=high, step=step, description="epochs",
                                      continuous_update=False)
        else:
            options = sorted({int(e) for e in epoch_choices} | {int(epochs)})
            self.epochs = w.SelectionSlider(options=options, value=int(epochs), description="epochs",
                                            continuous_update=False)
        low, high = lr_range
        self.lr = w.FloatLogSlider(value=lr, base=10, min=math.log10(low), max=math.log10(high), step=0.25,
                                   description="learning rate", readout_format=".0e",
                                   style={"description_width": "initial"}, continuous_update=False)
        self.button = w.Button(description="Train", button_style="primary", icon="play")
        self.status = w.HTML(value="")
        # At its natural size: a flex column would stretch the PNG to the full width and blur it.
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%", align_self="flex-start"))
        self.output = w.Output()
        self.plot = LivePlot(image=self.image, every_seconds=0.5)
        self.button.on_click(lambda _button: self._clicked())
        self.widget = w.VBox([
            w.HTML(f"<b>{title}</b>"),
            w.HBox([self.epochs, self.lr, self.button]),
            self.status, self.image, self.output,
        ])

    def train(self, epochs: int | None = None, lr: float | None = None) -> Any:
        """Train with the given (or the sliders') values; errors propagate to the caller."""
        epochs = int(self.epochs.value if epochs is None else epochs)
        lr = float(self.lr.value if lr is None else lr)
        self.button.disabled = True
        self.status.value = f"training {epochs} epochs at lr {lr:g} ..."
        start = time.perf_counter()
        try:
            self.output.clear_output(wait=True)
            with self.output:
                self.result = self.train_fn(epochs, lr, self.plot)
            self.runs += 1
            seconds = time.perf_counter() - start
            self.status.value = f"trained {epochs} epochs at lr {lr:g} in {seconds:.1f} s · {_summary(self.result)}"
            return self.result
        except BaseException as err:
            self.status.value = f"<span style='color:#b00'>failed: {type(err).__name__}: {err}</span>"
            raise
        finally:
            self.button.disabled = False

    def _clicked(self) -> None:
        try:
            self.error = None
            self.train()
        except Exception as err:  # noqa: BLE001 - a callback cannot raise into the notebook: show it instead
            self.error = err
            with self.output:
                traceback.print_exc()

    def show(self, train_now: bool = True) -> TrainingPanel:
        """Display the panel; by default train the default configuration once (headless runs rely on it)."""
        from IPython.display import display

        display(self.widget)
        if train_now:
            self.train()
        return self
