"""The one training loop every lab uses: `fit()` and `evaluate()`. A `Task` turns one batch into `(loss, outputs,
targets)`; a `Trainer` runs the steps; `fit` is the epoch loop and everything else (progress, early stopping,
checkpoints, ...) is a callback. Losses and metric sums stay on the device and the host syncs once per epoch."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from labkit.callbacks import Callback, FitState, Progress, _bar, overriding, progress_mode
from labkit.checkpoint import load_checkpoint
from labkit.device import amp_dtype, model_device, pick_device, prepare_model
from labkit.distributed import is_distributed as _distributed
from labkit.distributed import is_main_process as _is_main
from labkit.errors import UsageError
from labkit.history import History
from labkit.metrics import Metric, TopK, metric_from_name

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
        moved = [to_device(b, device, channels_last) for b in batch]
        return batch if all(a is b for a, b in zip(moved, batch)) else type(batch)(moved)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    return batch


def _autocast(device: torch.device, amp: bool) -> tuple[Any, torch.dtype | None]:
    dtype = amp_dtype(device, amp)
    return (contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)), dtype


class _Sums:
    """Per-epoch loss and metric sums: each step appends its detached loss (and metric batch sums) to lists
    that the epoch end combines in one op and one sync, so a full-batch epoch costs no extra tensor op."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self.metrics, self.derived = [m for m in metrics if not m.from_loss], [m for m in metrics if m.from_loss]
        self.losses: list[torch.Tensor] = []
        self.sizes: list[int] = []
        self.scores: list[list[torch.Tensor]] = [[] for _ in self.metrics]
        self.count = 0
        self.offset: list[float] | None = None  # host [loss sum, metric sums..., count] before a mid-epoch resume

    def add(self, loss: torch.Tensor, outputs: torch.Tensor | None, targets: torch.Tensor) -> None:
        if self.metrics and not self.losses and outputs is not None:  # the first batch of an epoch or evaluation
            _check_targets(self.metrics, outputs, targets)
        n = targets.numel()
        self.count += n
        self.losses.append(loss.detach())
        self.sizes.append(n)
        if outputs is not None and self.metrics:
            detached = outputs.detach()
            for scores, metric in zip(self.scores, self.metrics):
                scores.append(metric.batch_sum(detached, targets))

    def _totals(self) -> torch.Tensor:
        """[loss sum, metric sums..., count] as one float64 tensor on the device."""
        losses = torch.stack(self.losses).double()
        loss_sum = losses.sum() * self.sizes[0] if len(set(self.sizes)) == 1 else \
            losses @ torch.tensor(self.sizes, dtype=torch.float64, device=losses.device)
        parts = [torch.stack(scores).double().sum() if scores else loss_sum.new_zeros(()) for scores in self.scores]
        return torch.stack([loss_sum, *parts, loss_sum.new_tensor(float(self.count))])

    def partial(self) -> list[float]:
        """This process's host totals so far (for a mid-epoch checkpoint; one sync)."""
        totals = self._totals().tolist() if self.losses else [0.0] * (len(self.metrics) + 2)
        if self.offset is not None:
            totals = [a + b for a, b in zip(totals, self.offset)]
        return totals

    def result(self) -> dict[str, float]:
        """Means over all items (all-reduced across processes under torch.distributed)."""
        if _distributed():
            totals = self._totals() if self.losses else torch.zeros(len(self.metrics) + 2, dtype=torch.float64)
            totals = totals.to(_collective_device())
            torch.distributed.all_reduce(totals)
            *host, count = [a + b for a, b in zip(totals.tolist(), self.offset or itertools.repeat(0.0))]
        elif not self.losses and self.offset is None:
            return {}
        elif len(self.losses) == 1 and not self.metrics and self.offset is None:  # full-batch fast path
            host, count = [self.losses[0].item() * self.sizes[0]], float(self.count)
        else:
            *host, count = self.partial()
        n = max(count, 1.0)
        out = {"loss": host[0] / n, **{metric.name: value / n for value, metric in zip(host[1:], self.metrics)}}
        return out | {metric.name: metric.derive(out["loss"]) for metric in self.derived}


def _check_targets(metrics: list[Metric], outputs: torch.Tensor, targets: torch.Tensor) -> None:
    """Accuracy and top-k compare class indices: one-hot or soft-label targets would broadcast into a wrong score."""
    name = next((m.name for m in metrics if isinstance(m, TopK)), None)
    if name is not None and (targets.is_floating_point() or targets.dim() >= outputs.dim()):
        raise UsageError(
            f"Metric '{name}' needs class indices as targets (integers, shape {tuple(outputs.shape[:-1])}), but got "
            f"{targets.dtype} targets of shape {tuple(targets.shape)} (one-hot or soft labels?). Pass the labels "
            f"as targets.argmax(1), or leave '{name}' out of metrics.")


def _explain(err: RuntimeError, model: nn.Module, batch: Batch) -> None:
    """Raise what to do about torch's error of a model whose dtype is not its inputs' (only called on an error)."""
    inputs = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if torch.is_tensor(inputs) and inputs.is_floating_point() and dtype is not None and inputs.dtype != dtype:
        raise UsageError(f"The model's parameters are {dtype} but its inputs are {inputs.dtype} (torch: "
                         f"{str(err).splitlines()[0][:100]}). Make them match: model.float() with float32 inputs "
                         f"(the usual choice), or inputs cast with .to({dtype}).") from err


def _collective_device() -> torch.device:
    """Tensors for all_reduce must live where the backend works: CUDA for nccl, CPU for gloo."""
    nccl = torch.distributed.get_backend() == "nccl"
    return torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")


def _as_task(task: Task | None, loss_fn: nn.Module | None) -> Task:
    if task is not None and loss_fn is not None:
        raise ValueError("Pass either task= or loss_fn= to fit()/evaluate(), not both.")
    return task if task is not None else SupervisedTask(loss_fn)


#: evaluation (and a training epoch) shows a batch bar, where bars are shown, from this many batches
EVAL_BAR_BATCHES = 10


@torch.no_grad()
def evaluate(model: nn.Module, data: Iterable[Batch], *, task: Task | None = None, loss_fn: nn.Module | None = None,
             metrics: Sequence[str | Metric] = ("accuracy",), device: str | torch.device | None = None,
             amp: bool = False, channels_last: bool = False, progress: bool | None = False,
             desc: str = "evaluating") -> dict[str, float]:
    """Mean loss and metrics of `model` over `data` (e.g. {'loss': 0.31, 'accuracy': 0.91}). `progress`: True
    shows a batch bar for a split of at least `EVAL_BAR_BATCHES` batches; None where a bar can redraw
    (`progress_mode`); False (the default, for tight loops) never."""
    device = pick_device(device) if device is not None else model_device(model)
    task = _as_task(task, loss_fn)
    sums = _Sums([metric_from_name(m) for m in metrics])
    was_training = model.training
    model.eval()
    task.start(model, False)
    autocast, _ = _autocast(device, amp)
    show = progress_mode(None) == "bar" if progress is None else bool(progress)
    batches = _batch_bar(data, show and _is_main(), desc)
    try:
        for batch in batches:
            batch = to_device(batch, device, channels_last)
            try:
                with autocast:
                    loss, outputs, targets = task(model, batch)
            except RuntimeError as err:
                _explain(err, model, batch)
                raise
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
    """(outputs, targets) of `model` over every batch of `data`, in order, as float32 on the CPU (in eval mode)."""
    device = pick_device(device) if device is not None else model_device(model)
    autocast, _ = _autocast(device, amp)
    outputs, targets, was_training = [], [], model.training
    model.eval()
    try:
        for inputs, labels in data:
            inputs = to_device(inputs, device, channels_last)
            with autocast:
                out = model(inputs)
            outputs.append(out.float().cpu())
            targets.append(labels.cpu())
    finally:
        model.train(was_training)
    return torch.cat(outputs), torch.cat(targets)


def _batch_bar(data: Iterable[Batch], show: bool, desc: str) -> Iterable[Batch]:
    """A batch bar over `data` where shown and at least `EVAL_BAR_BATCHES` long, else `data` itself."""
    n = len(data) if hasattr(data, "__len__") else None  # type: ignore[arg-type]
    return _bar(data, show and (n is None or n >= EVAL_BAR_BATCHES), desc=desc, unit="batch", total=n, leave=False)


def _epoch_setter(data: Any) -> Callable[[int], None]:
    """What reshuffles per epoch: TensorLoader.set_epoch, or a DataLoader's DistributedSampler's (or nothing)."""
    found = (getattr(obj, "set_epoch", None) for obj in (data, getattr(data, "sampler", None),
                                                          getattr(data, "batch_sampler", None)))
    return next((setter for setter in found if setter is not None), lambda epoch: None)


def divergence_message(epoch: int, loss: float, lr: float, data: Iterable[Batch] = (),
                       sums: _Sums | None = None) -> str:
    """Why the training loss became non-finite: the data when it was so from the epoch's first step and the inputs
    hold NaN/inf (looked for in up to 32 batches, only after a divergence), else the learning rate."""
    first_step_bad = sums is not None and bool(sums.losses) and not math.isfinite(sums.losses[0].item())
    inputs = (b[0] if isinstance(b, (tuple, list)) else b for b in itertools.islice(data, 32))
    if first_step_bad and any(torch.is_tensor(x) and x.is_floating_point() and not x.isfinite().all() for x in inputs):
        return (f"Training stopped at epoch {epoch}: the training loss was {loss} from the epoch's first step, and the "
                "inputs of the train split contain NaN or infinite values, so the learning rate is not the cause. "
                "Clean the data (find the samples with ~torch.isfinite(x), drop or repair them) and train again.")
    return (f"Training diverged at epoch {epoch}: the training loss became {loss} with learning rate {lr:g}. The "
            f"steps overshoot the minimum and grow each epoch. Lower the learning rate (try {lr / 10:g}), or clip "
            "gradients with grad_clip=1.0.")


class Trainer:
    """How the steps of one fit run (`fit` builds one; alone it times a few steps). `scheduler_interval`: "epoch"
    or "step" (ReduceLROnPlateau gets the `monitor`ed value); `amp`: mixed precision where the device runs it
    natively (`device.amp_dtype`: bf16, or fp16 + GradScaler on older GPUs); `channels_last`: CUDA and CPU."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, task: Task | None = None,
                 metrics: Sequence[str | Metric] = (), scheduler: Any = None, scheduler_interval: str = "epoch",
                 device: str | torch.device | None = None, amp: bool = False, channels_last: bool = False,
                 grad_clip: float | None = None, monitor: str | None = None) -> None:
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', not {scheduler_interval!r}.")
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and scheduler_interval == "step":
            raise ValueError("ReduceLROnPlateau needs scheduler_interval='epoch' (it reacts to validation results).")
        # what would train silently wrong, or fail with a raw torch error, is refused before the first step
        if any(p.is_meta for p in model.parameters()):
            raise UsageError("The model's weights are on the meta device (shapes without values), so it cannot "
                             "train: build it outside torch.device('meta'), or call model.to_empty(device=...) and "
                             "then initialize or load its weights.")
        own, held = {id(p) for p in model.parameters()}, {id(p) for g in optimizer.param_groups for p in g["params"]}
        if own and not own & held:
            raise UsageError("The optimizer does not hold this model's parameters (was it built for another model, "
                             "or before the model was rebuilt?), so training would change nothing: build it from "
                             "model.parameters() of the model you pass to fit().")
        if grad_clip is not None and not grad_clip > 0:
            raise UsageError(f"grad_clip={grad_clip} must be a positive gradient norm (e.g. 1.0), or None for no "
                             "clipping: a negative one turns the steps into gradient ascent, 0 stops learning.")
        self.model, self.optimizer, self.task = model, optimizer, task if task is not None else SupervisedTask()
        self.metrics = [metric_from_name(m) for m in metrics]
        self.scheduler, self.scheduler_interval, self.monitor = scheduler, scheduler_interval, monitor
        self.device, self.amp, self.grad_clip = pick_device(device), amp, grad_clip
        self.channels_last = channels_last
        prepare_model(model, self.device, self.channels_last)
        self.autocast, dtype = _autocast(self.device, amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)  # fp16 only

    def train_one_epoch(self, data: Iterable[Batch], *, bar: bool = False, desc: str = "training",
                        sums: _Sums | None = None, skip: int = 0,
                        after_step: Callable[[int, _Sums], bool] | None = None) -> dict[str, float] | None:
        """One pass over `data`: its mean loss and metrics. `skip` batches are drawn and dropped first (a mid-epoch
        resume keeps the epoch's order and augmentation); `after_step(steps_done, sums)` returns True to stop the
        epoch there (None is then returned). The GradScaler is a pass-through except for fp16."""
        model, optimizer, scaler, scaled = self.model, self.optimizer, self.scaler, self.scaler.is_enabled()
        if not model.training:  # evaluate() restores the mode; avoid a recursive call per tiny epoch
            model.train()
        self.task.start(model, True)
        sums = sums if sums is not None else _Sums(self.metrics)
        batches = _batch_bar(data, bar, desc)
        step_scheduler = self.scheduler is not None and self.scheduler_interval == "step"
        for steps, batch in enumerate(batches, 1):
            if steps <= skip:
                continue
            batch = to_device(batch, self.device, self.channels_last)
            optimizer.zero_grad(set_to_none=True)  # before the forward pass: its activations reuse the grads' memory
            try:
                with self.autocast:
                    loss, outputs, targets = self.task(model, batch)
            except RuntimeError as err:
                _explain(err, model, batch)
                raise
            (scaler.scale(loss) if scaled else loss).backward()
            if self.grad_clip is not None:
                scaler.unscale_(optimizer)  # a no-op unless fp16 scales
                nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
            scaler.step(optimizer) if scaled else optimizer.step()
            scaler.update()
            if step_scheduler:
                self.scheduler.step()
            sums.add(loss, outputs, targets)
            if after_step is not None and after_step(steps, sums):
                if hasattr(batches, "close"):
                    batches.close()
                return None
        if sums.count == 0 and sums.offset is None:
            raise ValueError("The training loader yielded no batches: check the split and batch size "
                             "(drop_last with a batch larger than the dataset gives none).")
        return {f"train_{k}": v for k, v in sums.result().items()}

    def evaluate(self, eval_sets: Mapping[str, Iterable[Batch]], bar: bool = False) -> dict[str, float]:
        """Every evaluation set's loss and metrics, as {"val_loss": ..., "val_accuracy": ...}."""
        values: dict[str, float] = {}
        for name, loader in eval_sets.items():
            result = evaluate(self.model, loader, task=self.task, metrics=self.metrics, device=self.device,
                              amp=self.amp, channels_last=self.channels_last, progress=bar, desc=name)
            values.update({f"{name}_{k}": v for k, v in result.items()})
        return values

    def step_scheduler(self, values: Mapping[str, float], monitor: str) -> None:
        if self.scheduler is None or self.scheduler_interval != "epoch":
            return
        plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if plateau and monitor not in values:
            raise KeyError(f"ReduceLROnPlateau monitors {monitor!r}, not among {sorted(values)}.")
        self.scheduler.step(*[values[monitor]] * plateau)


#: under DDP the processes agree whether to stop every this many steps (one 1-element all_reduce)
STOP_CHECK_EVERY = 16


def fit(model: nn.Module, train_data: Iterable[Batch], *, epochs: int, optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module | None = None, task: Task | None = None,
        eval_data: Iterable[Batch] | Mapping[str, Iterable[Batch]] | None = None, metrics: Sequence[str | Metric] = (),
        scheduler: Any = None, callbacks: Sequence[Callback] = (), resume_from: str | os.PathLike | None = None,
        **step: Any) -> History:
    """Train `model` for up to `epochs` epochs (numbered from 1) and return its History. `eval_data`: a loader
    (recorded as `val_*`) or a mapping {"val": ..., "test": ...}, evaluated after every epoch. `step`: the
    `Trainer`'s options. `callbacks`: see `labkit.callbacks`; a `Progress()` is added unless one is given.
    `resume_from`: a checkpoint (the result equals an uninterrupted run). A non-finite training loss stops the
    run with `history.diverged` and a `stop_reason` saying why; nothing is raised."""
    trainer = Trainer(model, optimizer, task=_as_task(task, loss_fn), metrics=metrics, scheduler=scheduler, **step)
    eval_sets = dict(eval_data) if isinstance(eval_data, Mapping) else {} if eval_data is None else {"val": eval_data}
    monitor = trainer.monitor or ("val_loss" if "val" in eval_sets else f"{next(iter(eval_sets), 'train')}_loss")
    history, start, partial = History(), 0, None
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from, model, optimizer, scheduler, scaler=trainer.scaler,
                               map_location=trainer.device, restore_rng=True)
        history, start, partial = ckpt.history, ckpt.epoch, ckpt.partial
    callbacks = sorted([*callbacks, *(() if any(isinstance(c, Progress) for c in callbacks) else (Progress(),))],
                       key=lambda cb: cb.order)
    state = FitState(model=model, optimizer=optimizer, scheduler=scheduler, history=history, epoch=start,
                     epochs=epochs, monitor=monitor, is_main=_is_main(), scaler=trainer.scaler)
    for cb in overriding(callbacks, "on_fit_start"):
        cb.on_fit_start(state)
    after_step = _after_step(state, overriding(callbacks, "on_step_end"))
    epoch_hooks, set_epoch = overriding(callbacks, "on_epoch_end"), _epoch_setter(train_data)
    bars, n_batches = any(getattr(cb, "batch_bars", False) for cb in callbacks), getattr(train_data, "__len__", None)
    try:
        for epoch in range(start + 1, epochs + 1):
            state.epoch, state.step, state.epoch_lr = epoch, 0, float(optimizer.param_groups[0]["lr"])
            state.epoch_started = time.perf_counter()
            set_epoch(epoch)
            sums, skip = _resume_point(state, partial, trainer.metrics)
            values = trainer.train_one_epoch(train_data, bar=bars, desc=f"epoch {epoch}", sums=sums, skip=skip,
                                             after_step=after_step)
            if values is None:  # stopped inside the epoch: a time budget, a signal, a callback
                of = f" of {n_batches()}" if n_batches else ""
                history.stop_reason = f"{state.stop_reason or 'stopped'} at epoch {epoch}, step {state.step}{of}"
                break
            if not math.isfinite(values["train_loss"]):
                history.append(epoch, state.epoch_lr, state.epoch_seconds(), values)
                history.diverged = True
                history.stop_reason = divergence_message(epoch, values["train_loss"], state.epoch_lr, train_data, sums)
                break
            values.update(trainer.evaluate(eval_sets, bars))
            trainer.step_scheduler(values, monitor)
            history.append(epoch, state.epoch_lr, state.epoch_seconds(), values)
            for cb in epoch_hooks:
                cb.on_epoch_end(state)
            if _agree_to_stop(state.stop):
                state.stop, history.stop_reason = True, state.stop_reason or history.stop_reason
                break
    finally:
        for cb in overriding(callbacks, "on_fit_end"):
            cb.on_fit_end(state)
    return history


def _resume_point(state: FitState, partial: Mapping[str, Any] | None, metrics: list[Metric]) -> tuple[_Sums, int]:
    """The epoch's running sums and the batches to skip: none, or a mid-epoch checkpoint's position."""
    sums = _Sums(metrics)
    if partial is None or int(partial.get("epoch", -1)) != state.epoch:
        return sums, 0
    sums.offset = [float(v) for v in partial["sums"]]
    state.epoch_lr, state.epoch_started = float(partial["lr"]), state.epoch_started - float(partial.get("seconds", 0))
    return sums, int(partial["steps"])


def _after_step(state: FitState, hooks: list[Callback]) -> Callable[[int, _Sums], bool] | None:
    """The per-step call of the callbacks overriding on_step_end (None in one process without any). Under DDP
    the ranks agree every `STOP_CHECK_EVERY` steps, so one rank's stop lands on the same step everywhere."""
    distributed = _distributed()
    if not hooks and not distributed:
        return None

    def after_step(steps: int, sums: _Sums) -> bool:
        state.step, state.sums = steps, sums
        for cb in hooks:
            cb.on_step_end(state)
        if distributed and steps % STOP_CHECK_EVERY == 0:
            state.stop = _agree_to_stop(state.stop)
        return state.stop and (not distributed or steps % STOP_CHECK_EVERY == 0)

    return after_step


def _agree_to_stop(stop: bool) -> bool:
    """Under DDP any rank's stop is everyone's (one tiny all-reduce); a single process decides alone."""
    if not _distributed():
        return stop
    flag = torch.tensor([1.0 if stop else 0.0], device=_collective_device())
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())
