"""TensorBoard logging as a callback: `fit(..., callbacks=[TensorBoardLogger("runs/x/tb", hparams=cfg)])`. One chart
per metric (`loss/train`, `loss/val`), the lr, hparams at the end; a model that cannot be traced for the graph
tab gets a text summary instead."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from labkit.callbacks import Callback, FitState
from labkit.checkpoint import unwrap


def add_graph_or_summary(writer: Any, model: torch.nn.Module, example: Any) -> bool:
    """Write the model graph; if tracing fails, write a text summary and say why. Returns True for a graph."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TensorBoard draws graphs by tracing: its tracer notes are noise here
            writer.add_graph(model, example, use_strict_trace=False)
        writer.flush()
        return True
    except Exception as err:  # noqa: BLE001 - tracing can fail in many ways (control flow, dict outputs, ...)
        writer.add_text("model/summary", "```\n" + str(model) + "\n```")
        print(f"TensorBoard could not trace {type(model).__name__} for the graph tab "
              f"({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}); "
              "wrote a text summary under TEXT instead.")
        return False
    finally:
        model.train(was_training)


class TensorBoardLogger(Callback):
    """Log each epoch's History values and lr; hparams with the final metrics at the end; given `graph_input`,
    the model graph. Only rank 0 writes."""

    def __init__(self, log_dir: str | os.PathLike, hparams: Mapping[str, Any] | None = None,
                 graph_input: Any = None) -> None:
        self.log_dir, self.hparams, self.graph_input = Path(log_dir), dict(hparams or {}), graph_input
        self.writer: Any = None

    def on_fit_start(self, state: FitState) -> None:
        if not state.is_main:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        print(f"TensorBoard logs: {self.log_dir}  (view: tensorboard --logdir {self.log_dir.parent})")
        if self.graph_input is not None:  # the bare model: tracing DDP on rank 0 alone would wait for the others
            add_graph_or_summary(self.writer, unwrap(state.model), self.graph_input)

    def on_epoch_end(self, state: FitState) -> None:
        if self.writer is None:
            return
        history, epoch = state.history, state.epoch
        for key, values in history.metrics.items():  # 'val_accuracy' -> 'accuracy/val': a chart per metric
            split, _, metric = key.partition("_")
            self.writer.add_scalar(f"{metric}/{split}" if metric else key, values[-1], epoch)
        self.writer.add_scalar("lr", history.lr[-1], epoch)
        self.writer.add_scalar("seconds_per_epoch", history.seconds[-1], epoch)

    def on_fit_end(self, state: FitState) -> None:
        if self.writer is None:
            return
        history = state.history
        if self.hparams and len(history):
            params = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
                      for k, v in self.hparams.items() if v is not None}
            final = {f"hparam/{k}": history[k][-1] for k in history.keys()}  # noqa: SIM118
            self.writer.add_hparams(params, final, run_name=".")
        self.writer.close()

