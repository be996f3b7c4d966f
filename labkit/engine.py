"""The one training loop every lab uses: `fit()` and `evaluate()`.

A `Task` turns one batch into `(loss, outputs, targets)`; everything else —
devices, AMP, channels_last, gradient clipping, schedulers, metrics, early
stopping, checkpoints, resume, TensorBoard, progress bars, distributed
all-reduce — is handled here once. Losses and metric sums stay on the device
and the host syncs once per epoch, so tiny steps cost almost nothing extra.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from labkit import config as _config
from labkit.callbacks import Callback, EarlyStopping, FitState
from labkit.checkpoint import CheckpointPolicy, load_checkpoint
from labkit.device import amp_dtype, model_device, pick_device, prepare_model
from labkit.history import History
from labkit.metrics import Metric, metric_from_name

Batch = Any


class Task:
    """How one batch becomes a loss. Subclass it for new kinds of training (e.g. language models)."""

    def start(self, model: nn.Module, training: bool) -> None:
        """Called before each training epoch and each evaluation pass (e.g. to reset hidden state)."""

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        raise NotImplementedError


class SupervisedTask(Task):
    """`(inputs, targets)` batches; `loss_fn(model(inputs), targets)`."""

    def __init__(self, loss_fn: nn.Module | None = None) -> None:
        self.loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        outputs = model(inputs)
        return self.loss_fn(outputs, targets), outputs, targets


def to_device(batch: Batch, device: torch.device, channels_last: bool = False) -> Batch:
    """Move tensors in a (nested) batch to `device`; 4-D float inputs optionally to channels_last."""
    if isinstance(batch, torch.Tensor):
        if batch.device != device:
            batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    return batch


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _is_main() -> bool:
    return not _distributed() or torch.distributed.get_rank() == 0


def _autocast(device: torch.device, amp: bool) -> tuple[Any, torch.dtype | None]:
    """The autocast context for this device (AMP is used on CUDA only) and its dtype."""
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return contextlib.nullcontext(), None
    return torch.autocast("cuda", dtype=dtype), dtype


class _Sums:
    """Per-epoch loss and metric sums, kept on the device until the epoch ends.

    Each step only appends the detached batch loss (and each metric's batch sum) to a list;
    the epoch end combines them in one op and syncs once. For a full-batch epoch that is
    no extra tensor op at all, which keeps fit() within a few percent of a bare loop.
    """

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self.metrics = [m for m in metrics if not m.from_loss]
        self.derived = [m for m in metrics if m.from_loss]
        self.losses: list[torch.Tensor] = []
        self.sizes: list[int] = []
        self.scores: list[list[torch.Tensor]] = [[] for _ in self.metrics]
        self.count = 0
        #: host totals [loss sum, metric sums..., count] of batches before a mid-epoch resume
        self.offset: list[float] | None = None

    def add(self, loss: torch.Tensor, outputs: torch.Tensor | None, targets: torch.Tensor) -> None:
        n = targets.numel()
        self.count += n
        self.losses.append(loss.detach())
        self.sizes.append(n)
        if outputs is not None:
            detached = outputs.detach()
            for scores, metric in zip(self.scores, self.metrics):
                scores.append(metric.batch_sum(detached, targets))

    def _totals(self) -> torch.Tensor:
        """[loss sum, metric sums..., count] as one float64 tensor on the device."""
        losses = torch.stack(self.losses).double()
        if len(set(self.sizes)) == 1:
            loss_sum = losses.sum() * self.sizes[0]
        else:
            loss_sum = losses @ torch.tensor(self.sizes, dtype=torch.float64, device=losses.device)
        parts = [loss_sum]
        for scores in self.scores:
            parts.append(torch.stack(scores).double().sum() if scores else loss_sum.new_zeros(()))
        parts.append(loss_sum.new_tensor(float(self.count)))
        return torch.stack(parts)

    def partial(self) -> list[float]:
        """This process's host totals so far (for a mid-epoch checkpoint; one sync)."""
        totals = self._totals().tolist() if self.losses else [0.0] * (len(self.metrics) + 2)
        if self.offset is not None:
            totals = [a + b for a, b in zip(totals, self.offset)]
        return totals

    def result(self) -> dict[str, float]:
        """Means over all items (all-reduced across processes under torch.distributed)."""
        if not self.losses and not _distributed() and self.offset is None:
            return {}
        if len(self.losses) == 1 and not self.metrics and not _distributed() and self.offset is None:
            host, count = [self.losses[0].item() * self.sizes[0]], float(self.count)  # full-batch fast path
        else:
            totals = self._totals() if self.losses else torch.zeros(len(self.metrics) + 2, dtype=torch.float64)
            if _distributed():
                totals = totals.to(_collective_device())
                torch.distributed.all_reduce(totals)
            *host, count = totals.tolist()
            if self.offset is not None:
                *host, count = [a + b for a, b in zip([*host, count], self.offset)]
        n = max(count, 1.0)
        out = {"loss": host[0] / n}
        for value, metric in zip(host[1:], self.metrics):
            out[metric.name] = value / n
        for metric in self.derived:
            out[metric.name] = metric.derive(out["loss"])
        return out


def _collective_device() -> torch.device:
    """Tensors for all_reduce must live where the backend works: CUDA for nccl, CPU for gloo."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _as_task(task: Task | None, loss_fn: nn.Module | None) -> Task:
    if task is not None and loss_fn is not None:
        raise ValueError("Pass either task= or loss_fn= to fit()/evaluate(), not both.")
    return task if task is not None else SupervisedTask(loss_fn)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Iterable[Batch],
    *,
    task: Task | None = None,
    loss_fn: nn.Module | None = None,
    metrics: Sequence[str | Metric] = ("accuracy",),
    device: str | torch.device | None = None,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool | None = False,
    desc: str = "evaluating",
) -> dict[str, float]:
    """Mean loss and metrics of `model` over `data` (e.g. {'loss': 0.31, 'accuracy': 0.91}).

    `progress`: True shows a batch bar for a split of at least `EVAL_BAR_BATCHES` batches (a large
    split takes minutes on a CPU); None shows it where a bar can redraw (a notebook or a terminal,
    `progress_mode`); False (the default, for tight loops) never.
    """
    device = pick_device(device) if device is not None else model_device(model)
    task = _as_task(task, loss_fn)
    sums = _Sums([metric_from_name(m) for m in metrics])
    was_training = model.training
    model.eval()
    task.start(model, False)
    autocast, _ = _autocast(device, amp)
    n_batches = len(data) if hasattr(data, "__len__") else None  # type: ignore[arg-type]
    show = progress_mode(None) == "bar" if progress is None else bool(progress)
    show = show and _is_main() and (n_batches is None or n_batches >= EVAL_BAR_BATCHES)
    batches = _bar(data, show, desc=desc, unit="batch", total=n_batches, leave=False)
    try:
        for batch in batches:
            batch = to_device(batch, device, channels_last and device.type == "cuda")
            with autocast:
                loss, outputs, targets = task(model, batch)
            sums.add(loss.float(), None if outputs is None else outputs.float(), targets)
    finally:
        model.train(was_training)
        if hasattr(batches, "close"):
            batches.close()
    if sums.count == 0 and not _distributed():
        raise ValueError("evaluate() got no batches: the data loader is empty (check the split and batch size).")
    return sums.result()


@torch.no_grad()
def predict(model: nn.Module, data: Iterable[Batch], *, device: str | torch.device | None = None,
            amp: bool = False, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs, targets) of `model` over every batch of `data`, in order, as float32 on the CPU.

    The model is evaluated in eval mode and put back in the mode it was in.
    """
    device = pick_device(device) if device is not None else model_device(model)
    autocast, _ = _autocast(device, amp)
    outputs, targets = [], []
    was_training = model.training
    model.eval()
    try:
        for inputs, labels in data:
            inputs = to_device(inputs, device, channels_last and device.type == "cuda")
            with autocast:
                out = model(inputs)
            outputs.append(out.float().cpu())
            targets.append(labels.cpu())
    finally:
        model.train(was_training)
    return torch.cat(outputs), torch.cat(targets)


def _set_epoch(data: Any, epoch: int) -> None:
    """Reshuffle per epoch: TensorLoader.set_epoch, or a DataLoader's DistributedSampler."""
    for obj in (data, getattr(data, "sampler", None), getattr(data, "batch_sampler", None)):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
            return


def _eval_sets(eval_data: Any) -> dict[str, Iterable[Batch]]:
    if eval_data is None:
        return {}
    if isinstance(eval_data, Mapping):
        return dict(eval_data)
    return {"val": eval_data}


def _current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _progress(enabled: bool | None) -> bool:
    return (_config.progress_enabled() if enabled is None else enabled) and _is_main()


def _interactive() -> bool:
    """Where a tqdm bar redraws in place: a Jupyter front end (tqdm.auto's widget) or a terminal."""
    import sys

    from tqdm.auto import tqdm as auto

    if any(cls.__module__ == "tqdm.notebook" for cls in auto.__mro__):  # tqdm.auto chose the widget
        return True
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def progress_mode(progress: bool | None) -> str:
    """How a fit shows its epochs: "bar" (a notebook or a terminal), "lines" (a line per epoch where a bar
    cannot redraw: a log file, a pipe, CI) or "quiet" (progress off, or not rank 0)."""
    if not _is_main():
        return "quiet"
    wanted = _progress(progress) or (progress is False and _config.terminal_command() and _config.progress_enabled())
    if not wanted:
        return "quiet"
    return "bar" if progress is not False and _interactive() else "lines"


#: evaluation shows a batch bar (where bars are shown) for splits of at least this many batches
EVAL_BAR_BATCHES = 10

#: at most about this many epoch lines per fit in "lines" mode (Lab 01 fits run thousands of epochs)
MAX_EPOCH_LINES = 20


class EpochProgress:
    """The epochs of one fit as the user sees them: a bar, a line per epoch, or nothing.

    A run that stops early (early stopping, divergence, a time budget, Ctrl-C) says why exactly once:
    a bar ends at the epochs that ran with the reason as its description (in a notebook it is not
    left red, except for a diverged run); lines and quiet mode print the reason as one line.
    """

    def __init__(self, mode: str, start_epoch: int, epochs: int,
                 split_labels: Mapping[str, str] | None = None) -> None:
        self.mode, self.start_epoch, self.epochs = mode, start_epoch, epochs
        # "test" -> "hold-out" when the split named test is held out of train (the part before " (")
        self.names = {split: label.split(" (")[0] for split, label in (split_labels or {}).items()
                      if split != "train" and label}
        self.total = max(epochs - start_epoch, 0)
        self.every = max(1, math.ceil(self.total / MAX_EPOCH_LINES))
        self.bar = _bar(None, True, desc="epochs", unit="epoch", total=self.total) if mode == "bar" else None
        self.lines: list[str] = []  # what "lines" mode printed (for tests and callers)

    @property
    def batch_bars(self) -> bool:
        return self.mode == "bar"

    def epoch_done(self, epoch: int, values: Mapping[str, float], monitor: str, seconds: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k.replace("train_", "").replace("_", " "): f"{v:.4g}"
                                  for k, v in values.items() if k in ("train_loss", monitor)}, refresh=False)
            self.bar.update(1)
        elif self.mode == "lines":
            done = epoch - self.start_epoch
            if done == 1 or epoch == self.epochs or done % self.every == 0:
                shown = " · ".join(f"{self.label(k)} {v:.4g}" for k, v in values.items())
                self._print(f"epoch {epoch}/{self.epochs}: {shown} ({seconds:.1f} s)")

    def label(self, key: str) -> str:
        """'test_accuracy' -> 'hold-out accuracy' where the test split is a hold-out; else 'test accuracy'."""
        split, _, rest = key.partition("_")
        return f"{self.names.get(split, split)} {rest.replace('_', ' ')}".strip()

    def close(self, history: History) -> None:
        last = history.epoch[-1] if len(history) else self.start_epoch
        stopped = bool(history.stop_reason and (history.diverged or last < self.epochs))
        reason = ("⚠ " if history.diverged else "") + (history.stop_reason or "")
        if self.bar is not None:
            bar = self.bar
            bar.n = max(last - self.start_epoch, 0)  # the epochs that ran, whatever the bar last drew
            if stopped:
                bar.set_description_str(reason, refresh=False)
            bar.refresh()
            bar.close()
            pbar = getattr(getattr(bar, "container", None), "children", [None, None])[1]
            if stopped and not history.diverged and pbar is not None:
                # tqdm's notebook bar turns red ('danger') when it closes short of its total
                pbar.bar_style = "success" if "early stopping" in reason else "warning"
        elif stopped and _is_main():  # only rank 0 speaks under DDP
            self._print(reason)

    def _print(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


def divergence_message(epoch: int, loss: float, lr: float) -> str:
    return (
        f"Training diverged at epoch {epoch}: the training loss became {loss} with learning rate "
        f"{lr:g}. The steps overshoot the minimum and grow each epoch. Lower the learning rate "
        f"(try {lr / 10:g}), or clip gradients with grad_clip=1.0."
    )


@dataclass
class _Run:
    """What the steps of one `fit()` share: the model, the optimiser and how to step them."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    task: Task
    device: torch.device
    metrics: list[Metric]
    scaler: torch.amp.GradScaler
    autocast: Any
    channels_last: bool
    grad_clip: float | None
    scheduler: Any
    scheduler_interval: str
    amp: bool


def train_one_epoch(run: _Run, data: Iterable[Batch], show_bar: bool, desc: str, *,
                    sums: _Sums | None = None, skip: int = 0,
                    after_step: Callable[[int, _Sums], bool] | None = None) -> dict[str, float] | None:
    """One pass over `data`: forward, loss, backward, (clip,) step, per-step scheduler; mean loss/metrics.

    One step path: the GradScaler is disabled (a pass-through) except for fp16 autocast.
    `skip` batches are drawn and dropped first (a mid-epoch resume: the loader's order and
    augmentation are those of the epoch); `after_step(steps_done, sums)` runs after each step and
    returns True to stop the epoch there (None is then returned: the epoch did not finish).
    """
    model, optimizer, scaler = run.model, run.optimizer, run.scaler
    if not model.training:  # evaluate() restores the mode; avoid a recursive call per tiny epoch
        model.train()
    run.task.start(model, True)
    sums = sums if sums is not None else _Sums(run.metrics)
    n_batches = len(data) if hasattr(data, "__len__") else None  # type: ignore[arg-type]
    batches = _bar(data, show_bar, desc=desc, unit="batch", total=n_batches, leave=False)
    step_scheduler = run.scheduler is not None and run.scheduler_interval == "step"
    steps = 0
    for batch in batches:
        steps += 1
        if steps <= skip:
            continue
        batch = to_device(batch, run.device, run.channels_last)
        with run.autocast:
            loss, outputs, targets = run.task(model, batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if run.grad_clip is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), run.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if step_scheduler:
            run.scheduler.step()
        sums.add(loss, outputs, targets)
        if after_step is not None and after_step(steps, sums):
            if hasattr(batches, "close"):
                batches.close()
            return None
    if sums.count == 0 and sums.offset is None:
        raise ValueError("The training loader yielded no batches: check the split and batch size "
                         "(drop_last with a batch larger than the dataset gives none).")
    return {f"train_{k}": v for k, v in sums.result().items()}


def evaluate_sets(run: _Run, eval_sets: Mapping[str, Iterable[Batch]], show_bar: bool = False) -> dict[str, float]:
    """Every evaluation set's loss and metrics, as {"val_loss": ..., "val_accuracy": ...}; `show_bar`:
    a batch bar for each large split (see `evaluate`)."""
    values: dict[str, float] = {}
    for name, loader in eval_sets.items():
        result = evaluate(run.model, loader, task=run.task, metrics=run.metrics, device=run.device,
                          amp=run.amp, channels_last=run.channels_last, progress=show_bar, desc=f"{name}")
        values.update({f"{name}_{k}": v for k, v in result.items()})
    return values


def step_epoch_scheduler(run: _Run, values: Mapping[str, float], monitor: str) -> None:
    """The per-epoch scheduler step (ReduceLROnPlateau gets the monitored value)."""
    if run.scheduler is None or run.scheduler_interval != "epoch":
        return
    if isinstance(run.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if monitor not in values:
            raise KeyError(f"ReduceLROnPlateau monitors {monitor!r}, not among {sorted(values)}.")
        run.scheduler.step(values[monitor])
    else:
        run.scheduler.step()


def _default_monitor(eval_sets: Mapping[str, Any]) -> str:
    if "val" in eval_sets:
        return "val_loss"
    return f"{next(iter(eval_sets))}_loss" if eval_sets else "train_loss"


def fit(
    model: nn.Module,
    train_data: Iterable[Batch],
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module | None = None,
    task: Task | None = None,
    eval_data: Iterable[Batch] | Mapping[str, Iterable[Batch]] | None = None,
    metrics: Sequence[str | Metric] = (),
    scheduler: Any = None,
    scheduler_interval: str = "epoch",
    device: str | torch.device | None = None,
    grad_clip: float | None = None,
    amp: bool = False,
    channels_last: bool = False,
    early_stopping: EarlyStopping | None = None,
    checkpoints: CheckpointPolicy | None = None,
    callbacks: Sequence[Callback] = (),
    tensorboard: str | os.PathLike | None = None,
    graph_input: Any = None,
    resume_from: str | os.PathLike | None = None,
    monitor: str | None = None,
    progress: bool | None = None,
    config: Mapping[str, Any] | None = None,
    hparams: Mapping[str, Any] | None = None,
    split_labels: Mapping[str, str] | None = None,
) -> History:
    """Train `model` for up to `epochs` epochs (numbered from 1) and return its History.

    * `eval_data`: a loader (recorded as `val_*`) or a mapping such as {"val": ..., "test": ...},
      evaluated after every epoch with the same `metrics`.
    * `scheduler_interval`: "epoch" (step after each epoch) or "step" (after each optimizer step);
      a ReduceLROnPlateau scheduler is stepped with the monitored value.
    * `monitor`: the metric for ReduceLROnPlateau, best checkpoints and early stopping
      (default `val_loss`, or `train_loss` without eval data).
    * `amp` / `channels_last`: used on CUDA only (bf16 autocast where supported, else fp16 + GradScaler).
    * `tensorboard`: a log folder for scalars, `hparams` (default `config`) and, given `graph_input`,
      the model graph.
    * `resume_from`: a checkpoint path; restores model, optimizer, scheduler, History and RNG states,
      then continues until `epochs` — the result equals an uninterrupted run.
    * A non-finite training loss stops the run with `history.diverged = True` and a message in
      `history.stop_reason` naming the learning rate; nothing is raised.
    * `progress`: None follows `LABKIT_PROGRESS` (on by default); the epochs show as a bar in a notebook
      or a terminal, else as a line per epoch (`progress_mode`, `EpochProgress`); False shows nothing
      (except under the `labkit` command: lines). A run that stops early says why once.
    * `split_labels`: what the evaluation splits are, e.g. {"test": "hold-out (5,000 of train)"}: the
      epoch lines then say "hold-out accuracy" instead of "test accuracy".
    """
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'step', not {scheduler_interval!r}.")
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and scheduler_interval == "step":
        raise ValueError("ReduceLROnPlateau needs scheduler_interval='epoch' (it reacts to validation results).")
    device = pick_device(device)
    use_channels_last = channels_last and device.type == "cuda"
    prepare_model(model, device, use_channels_last)
    autocast, amp_dtype = _autocast(device, amp)
    run = _Run(model=model, optimizer=optimizer, task=_as_task(task, loss_fn), device=device,
               metrics=[metric_from_name(m) for m in metrics],
               scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),  # fp16 only
               autocast=autocast, channels_last=use_channels_last, grad_clip=grad_clip,
               scheduler=scheduler, scheduler_interval=scheduler_interval, amp=amp)
    eval_sets = _eval_sets(eval_data)
    monitor = monitor or _default_monitor(eval_sets)

    history, start_epoch, partial = History(), 0, None
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from, model, optimizer, scheduler, scaler=run.scaler,
                               map_location=device, restore_rng=True)
        history, start_epoch, partial = ckpt.history, ckpt.epoch, ckpt.partial

    all_callbacks: list[Callback] = list(callbacks)
    if tensorboard is not None and _is_main():
        from labkit.tensorboard import TensorBoardLogger

        all_callbacks.append(TensorBoardLogger(tensorboard, hparams=dict(hparams or config or {}),
                                               graph_input=graph_input if resume_from is None else None))
    all_callbacks += [cb for cb in (checkpoints, early_stopping) if cb is not None]
    state = FitState(model=model, optimizer=optimizer, scheduler=scheduler, history=history,
                     epoch=start_epoch, epochs=epochs, monitor=monitor, config=dict(config or {}),
                     device=device, is_main=_is_main(), scaler=run.scaler)
    for cb in all_callbacks:
        cb.on_fit_start(state)
    step_hooks = [cb for cb in all_callbacks if type(cb).on_step_end is not Callback.on_step_end]

    def after_step(steps: int, sums: _Sums) -> bool:
        state.step, state.sums = steps, sums
        for cb in step_hooks:
            cb.on_step_end(state)
        if _INTERRUPT.requested:
            state.stop_now, state.interrupted = True, True
        return _agree_to_stop(state.stop_now)

    model.train()
    shown = EpochProgress(progress_mode(progress), start_epoch, epochs, split_labels)
    n_batches = len(train_data) if hasattr(train_data, "__len__") else None  # type: ignore[arg-type]
    try:
        with _catch_interrupts():
            for epoch in range(start_epoch + 1, epochs + 1):
                state.epoch, state.step = epoch, 0
                started = time.perf_counter()
                lr = _current_lr(optimizer)
                _set_epoch(train_data, epoch)
                sums, skip = _Sums(run.metrics), 0
                if partial is not None and int(partial.get("epoch", -1)) == epoch:  # a mid-epoch resume
                    skip, sums.offset = int(partial["steps"]), [float(v) for v in partial["sums"]]
                    lr, started = float(partial["lr"]), started - float(partial.get("seconds", 0.0))
                state.epoch_lr, state.epoch_started = lr, started
                values = train_one_epoch(run, train_data, shown.batch_bars and (n_batches is None or n_batches >= 10),
                                         f"epoch {epoch}", sums=sums, skip=skip, after_step=after_step)
                if values is None:  # stopped inside the epoch: a time budget or Ctrl-C/SIGTERM
                    _stopped_mid_epoch(state, checkpoints, n_batches)
                    break
                if not math.isfinite(values["train_loss"]):
                    history.append(epoch, lr, time.perf_counter() - started, values)
                    history.diverged = True
                    history.stop_reason = divergence_message(epoch, values["train_loss"], lr)
                    break
                values.update(evaluate_sets(run, eval_sets, shown.batch_bars))
                step_epoch_scheduler(run, values, monitor)
                history.append(epoch, lr, time.perf_counter() - started, values)
                for cb in all_callbacks:
                    cb.on_epoch_end(state)
                shown.epoch_done(epoch, values, monitor, history.seconds[-1])
                if state.stop:
                    break
    finally:
        shown.close(history)
        for cb in all_callbacks:
            cb.on_fit_end(state)
    if state.interrupted:
        raise KeyboardInterrupt(history.stop_reason)
    return history


def _stopped_mid_epoch(state: FitState, checkpoints: CheckpointPolicy | None, n_batches: int | None) -> None:
    """Record why the epoch stopped, write a mid-epoch checkpoint and say how to resume."""
    of = f" of {n_batches}" if n_batches else ""
    where = f"epoch {state.epoch}, step {state.step}{of}"
    reason = state.stop_reason or ("interrupted (Ctrl-C or SIGTERM)" if state.interrupted else "stopped")
    path = checkpoints.save_mid_epoch(state) if checkpoints is not None else None
    resume = f"; resume with --resume {path}" if path is not None else ""
    state.history.stop_reason = f"{reason} at {where}{resume}"


class _Interrupts:
    """Ctrl-C and SIGTERM during fit(): the first asks the loop to stop after the current step (it then
    writes a mid-epoch checkpoint); a second Ctrl-C stops at once, as usual."""

    def __init__(self) -> None:
        self.requested = False

    def handler(self, signum: int, frame: Any) -> None:
        import signal

        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True


_INTERRUPT = _Interrupts()


@contextlib.contextmanager
def _catch_interrupts() -> Any:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    _INTERRUPT.requested = False
    for sig in previous:
        signal.signal(sig, _INTERRUPT.handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _INTERRUPT.requested = False


def _agree_to_stop(stop: bool) -> bool:
    """Under DDP every rank must stop at the same step: any rank's stop is everyone's (one tiny
    all-reduce per step); a single process decides alone."""
    if not _distributed():
        return stop
    flag = torch.tensor([1.0 if stop else 0.0], device=_collective_device())
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _bar(iterable: Any, enabled: bool, **kwargs: Any) -> Any:
    """A tqdm.auto bar (a widget in Jupyter, text in a terminal) or the bare iterable."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=False, mininterval=0.5, dynamic_ncols=True, **kwargs)
