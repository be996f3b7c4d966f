"""The one runner: config -> data -> model -> `fit` (checkpoints, TensorBoard) -> the checkpoint chosen by
validation -> the test split once -> metrics.json and curves.png (rank 0). `load_run(ckpt)` rebuilds any lab's model."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import json
import os
import shutil
import socket
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from labkit import config as _config
from labkit import distributed as dist
from labkit import plots
from labkit.callbacks import Callback, EarlyStopping, Progress, StopOnSignal, TimeBudget, progress_mode
from labkit.checkpoint import Checkpoint, CheckpointPolicy, check_resume_length, load_checkpoint, load_model_state
from labkit.data.tensor_loader import single_thread_on_cpu
from labkit.device import (
    describe_device,
    describe_precision,
    prepare_model,
    rng_state,
    seed_everything,
    set_rng_state,
    synchronize,
)
from labkit.engine import Trainer, evaluate, fit
from labkit.errors import CheckpointError, LabkitError, UsageError, WriteError
from labkit.files import atomic_write, process_alive, remove_orphan_temp_files, write_text_atomic
from labkit.history import History
from labkit.lab import Lab, LabConfig, LabData, get_lab, shown
from labkit.optim import make_optimizer, make_scheduler
from labkit.tensorboard import TensorBoardLogger


@dataclass
class Run:
    """One trained (or reloaded) model of a lab, with its config, History and results."""

    lab: str
    config: LabConfig
    model: nn.Module
    history: History
    data: LabData | None = None
    out_dir: Path | None = None
    final: dict[str, dict[str, float]] = field(default_factory=dict)  # {"test": metrics of the chosen checkpoint}
    chosen_epoch: int | None = None   # the epoch whose weights `model` holds (best by validation, or last)
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)  # the model-shaping facts (num_classes, vocab, ...)
    ddp: dict[str, Any] = field(default_factory=dict)  # under torchrun: world size, each rank's shard fingerprint

    checkpoint_dir = property(lambda self: self.out_dir / "checkpoints" if self.out_dir is not None else None)
    best_checkpoint = property(lambda self: self._checkpoint("best.pt"))
    last_checkpoint = property(lambda self: self._checkpoint("last.pt"))

    def _checkpoint(self, name: str) -> Path | None:
        path = self.checkpoint_dir / name if self.checkpoint_dir is not None else None
        return path if path is not None and path.is_file() else None

    def summary(self) -> dict[str, Any]:
        """The final train metrics, the best validation value and its epoch, the final splits' metrics, seconds."""
        h, lab = self.history, get_lab(self.lab)
        out: dict[str, Any] = {"size": self.config.size, "recipe": self.config.recipe,
                               "epochs_run": h.epoch[-1] if len(h) else 0,
                               **{key: h.last(key) for key in h if key.startswith("train_")}}
        if lab.monitor and lab.monitor in h:
            epoch, value = h.best(lab.monitor)
            out[f"best_{lab.monitor}"], out["best_epoch"] = value, epoch
        for split, metrics in self.final.items():
            out.update({f"{split}_{k}": v for k, v in metrics.items()})
        if h.diverged:
            out["diverged"] = True
        out["seconds"] = round(self.seconds or h.total_seconds, 2)
        return out


def default_out_dir(lab: Lab, cfg: LabConfig) -> Path:
    """`cfg.out`, else `runs/<lab>` (`runs/<lab>-<recipe>` for a non-default recipe)."""
    if cfg.out_dir is not None:
        return cfg.out_dir
    suffix = "" if cfg.recipe == next(iter(lab.recipes)) else f"-{cfg.recipe}"
    return _config.runs_dir() / f"{lab.name}{suffix}"


LOCK_NAME = ".labkit-run.lock"
RUN_OUTPUTS = ("checkpoints", "tensorboard", "metrics.json", "curves.png")  # what overwrite=True removes


def writable_folder(out: Path) -> Path:
    """Create `out` and write a file there (os.access says yes to root on a read-only mount) before any work."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (probe := out / f".labkit-write-test-{os.getpid()}").write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise WriteError(f"--out {out}: the folder cannot be created or written to ({err.strerror or err}). "
                         "Choose a writable folder with --out DIR (or set LABKIT_RUNS).") from None
    return out


@contextlib.contextmanager
def claim_folder(out: Path, *, resume: str | os.PathLike | None = None, overwrite: bool = True) -> Iterator[None]:
    """Hold `out` for one run: a lock file (pid, host) that a second run stops at (a dead process's is taken
    over), orphan temporary files of killed saves removed, and another run's checkpoints refused, or
    removed when `overwrite`; a resume keeps only the checkpoints of its own folder."""
    ckpts = out / "checkpoints"
    for inner in (out, ckpts, out / "tensorboard"):
        if inner.exists() and not inner.is_dir():
            raise WriteError(f"{inner} is a file, not a folder: a run writes its outputs there. Move or delete that "
                             "file, or write the run elsewhere with --out DIR.")
    if out.is_dir() and (inside := sorted(p.name for p in out.glob("*.pt") if p.is_file())):
        raise WriteError(f"{out} holds checkpoint files ({', '.join(inside)}): another run's checkpoints folder, not "
                         "a run folder. Write this run into a folder of its own with --out DIR.")
    lock, host = writable_folder(out) / LOCK_NAME, socket.gethostname()
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            with contextlib.suppress(OSError, ValueError):
                owner = {}
                owner = json.loads(lock.read_text())
            pid = owner.get("pid")
            if owner.get("host") != host or not isinstance(pid, int) or process_alive(pid):
                raise WriteError(f"{out} is in use by another run (pid {pid} on {owner.get('host', '?')}, started "
                                 f"{owner.get('started', '?')}). Wait for it, or write this run elsewhere with "
                                 f"--out DIR. (If no such run exists, delete {lock}.)") from None
            print(f"note: {out} was locked by pid {pid}, which no longer runs; taking the folder over.")
            lock.unlink(missing_ok=True)
    with os.fdopen(fd, "w") as handle:
        json.dump({"pid": os.getpid(), "host": host, "started": time.strftime("%Y-%m-%d %H:%M:%S")}, handle)
    try:
        for folder in (out, ckpts):
            if removed := remove_orphan_temp_files(folder):
                print(f"note: removed {len(removed)} unfinished temporary file(s) of a killed save in {folder}")
        found = sorted(ckpts.glob("*.pt")) if ckpts.is_dir() else []
        if broken := [p.name for p in found if not p.is_file()]:
            print(f"note: {', '.join(broken)} in {ckpts}: a broken or looping link, not a checkpoint; ignored.")
        old = [p.name for p in found if p.is_file()]
        own = resume is not None and Path(resume).parent.resolve() == ckpts.resolve()
        if old and not own:
            if not overwrite:
                raise WriteError(f"{out} already holds another run's checkpoints ({', '.join(old)}). Continue that "
                                 f"run with --resume {ckpts / 'last.pt'}, write this one elsewhere with --out DIR, "
                                 "or replace it with --overwrite.")
            for target in (out / name for name in RUN_OUTPUTS):
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        yield
    finally:
        lock.unlink(missing_ok=True)


#: config fields a resume may change: they do not change what the remaining steps compute
RESUMABLE = ("epochs", "time_budget", "checkpoint_minutes", "device", "out", "data", "tensorboard", "ddp_timeout",
             "at_epochs")


def check_resume(cfg: LabConfig, resume: str | os.PathLike) -> Checkpoint:
    """Refuse a resume whose config differs from the checkpoint's in anything but `RESUMABLE` (it would not
    continue that run), or that has nothing left to train."""
    ckpt, values = load_checkpoint(resume), cfg.to_dict()
    for f in dataclasses.fields(cfg):
        saved, value = ckpt.config.get(f.name, ...), values[f.name]
        if (f.metadata.get("cli", True) or f.name in ("size", "recipe")) and f.name not in RESUMABLE \
                and saved is not ... and saved != value:
            flag = "--" + f.name.replace("_", "-")
            raise UsageError(f"{flag}: the checkpoint was trained with {shown(saved)}; drop {flag} to resume, or "
                             "start a new run.")
    if cfg.epochs <= ckpt.epoch:
        raise UsageError(f"--epochs {cfg.epochs}: {resume} has already trained {ckpt.epoch} epochs; resume with "
                         f"--epochs {ckpt.epoch + 1} or more to train further.")
    check_resume_length(resume, ckpt.config, cfg.epochs)
    return ckpt


def carry_best(start: Checkpoint, best: Path, monitor: str) -> None:
    """A resume into a folder without best.pt brings the resumed history's best weights along (the source
    folder's best.pt, or the resumed checkpoint itself), so that best.pt and the chosen epoch stay the best."""
    if best.exists() or monitor not in start.history:
        return
    epoch = start.history.best(monitor)[0]
    for source in (start.path.parent / "best.pt", start.path if start.partial is None else None):
        if source is not None and source.is_file():
            found = load_checkpoint(source)
            if found.epoch == epoch and found.history[monitor] == start.history[monitor][:epoch]:
                shutil.copyfile(source, best)
                return
    print(f"note: the weights of epoch {epoch} (the best {monitor} so far) are not beside {start.path}: unless a "
          "later epoch beats it, the run keeps its last epoch's weights.")


def run(lab: str | Lab, cfg: LabConfig, *, data: LabData | None = None,
        model: nn.Module | Callable[[], nn.Module] | None = None, task: Any = None, callbacks: Sequence[Callback] = (),
        resume: str | os.PathLike | None = None, progress: bool | None = None,
        epoch_splits: Sequence[str] | None = None, write_files: bool = True, checkpoints: bool = True,
        overwrite: bool = True, estimate: bool | None = None) -> Run:
    """Train one config of a lab. `model`: a module or a function building one after seeding; `resume`: a checkpoint
    whose config `cfg` may differ from only in `RESUMABLE` fields; `write_files=False`: no metrics.json/curves.png,
    `checkpoints=False`: no checkpoints either. `overwrite`: replace a folder holding another run's checkpoints (a
    notebook re-running its cell), else refuse. `estimate` (default: all but smoke) prints the estimated time; in a
    notebook a run over `LONG_RUN_MINUTES` raises `LongRunError` unless inside `with allow_long_runs():`."""
    lab = get_lab(lab)
    start = check_resume(cfg, resume) if resume is not None else None
    out = default_out_dir(lab, cfg)
    with dist.session(cfg.device, timeout_s=cfg.ddp_timeout) as ctx:
        writes = (write_files or checkpoints) and ctx.is_main_process
        if ctx.is_main_process and cfg.size != "smoke":
            used = {k: getattr(cfg, k) and k not in lab.unused_options for k in ("amp", "channels_last")}
            print(f"computing in {describe_precision(ctx.device, **used)} on {ctx.device}", flush=True)
        with (claim_folder(out, resume=resume, overwrite=overwrite) if writes else contextlib.nullcontext(),
              single_thread_on_cpu(ctx.device) if cfg.size == "smoke" else contextlib.nullcontext()):
            seed_everything(cfg.seed)
            if data is None:
                with dist.rank_zero_first():  # one process builds the decode caches
                    data = lab.load_data(cfg, ctx)
            if model is None:
                model = lab.build_model(cfg, data.info)
            elif not isinstance(model, nn.Module):
                model = model()
            prepare_model(model, ctx.device, cfg.channels_last, compile=getattr(cfg, "compile", False))
            splits = lab.epoch_splits if epoch_splits is None else tuple(epoch_splits)
            shards = shard_fingerprints(data, ctx)
            est = None
            if estimate if estimate is not None else cfg.size != "smoke":
                est = estimate_run(lab, cfg, data, model, task, splits, ctx.device)
                if ctx.is_main_process:
                    print(est, flush=True)
                if plots.in_notebook() and not _ALLOW_LONG[0] and est.seconds > LONG_RUN_MINUTES * 60:
                    raise LongRunError(
                        f"This run is {est}: over {LONG_RUN_MINUTES:.0f} minutes, so it does not start by itself. "
                        "Press Train on the panel to start it anyway, choose a smaller SIZE (e.g. 'laptop') in the "
                        "first cell, or wrap the call in `with labkit.runner.allow_long_runs():`.", est)
            result = _train(lab, cfg, ctx, data, model, task if task is not None else lab.task(cfg),
                            callbacks, start, progress, splits, out, write_files, checkpoints)
            result.ddp = shards
            if est is not None and len(result.history):  # `labkit reproduce` records estimate against measured
                measured = result.history.total_seconds / len(result.history)
                ESTIMATES.append({"run": str(out), "estimated_epoch_seconds": float(f"{est.seconds_per_epoch:.3g}"),
                                  "measured_epoch_seconds": float(f"{measured:.3g}")})
            if write_files and ctx.is_main_process:
                write_outputs(lab, result)
    return result


def load_data(lab: str | Lab, cfg: LabConfig) -> LabData:
    """The config's data on the device a run of `cfg` uses: a notebook loads it once for every `run(data=...)`."""
    return get_lab(lab).load_data(cfg, dist.init_distributed(cfg.device))


# The commands' default runs; a lab whose `main`/`reference`/`smoke` hook returns a result replaces them.
def _run_and_report(lab: Lab, cfg: LabConfig, **kwargs: Any) -> dict[str, Any]:
    result = run(lab, cfg, **kwargs)  # then the lab's `report` (on rank 0): its summary and the report's numbers
    main_process = not dist.launched_by_torchrun() or os.environ.get("RANK", "0") == "0"
    return {**result.summary(), **((lab.report(result) or {}) if main_process else {})}


def command_run(lab: str | Lab, cfg: LabConfig, args: Any = None) -> dict[str, Any]:
    lab = get_lab(lab)
    custom = lab.main(cfg, args)
    return custom if custom is not None else _run_and_report(
        lab, cfg, resume=getattr(args, "resume", None), overwrite=getattr(args, "overwrite", False))


def reference_runs(lab: str | Lab, size: str, out_dir: Path) -> dict[str, dict[str, Any]]:
    """`labkit reproduce`: by default the first recipe at `size` into `out_dir/<recipe>/`; {name: numbers}."""
    lab, name = get_lab(lab), next(iter(get_lab(lab).recipes))
    if (custom := lab.reference(size, out_dir)) is not None:
        return custom
    summary = _run_and_report(lab, lab.config(size, out=str(Path(out_dir) / name)))
    keys = lab.reference_keys or [k for k, v in summary.items() if isinstance(v, (int, float))]
    return {name: {k: summary[k] for k in keys if k in summary}}


def smoke_run(lab: str | Lab, out_dir: Path) -> dict[str, Any]:
    """`labkit smoke`: by default the smoke-size run into `out_dir`."""
    lab = get_lab(lab)
    custom = lab.smoke(out_dir)
    return custom if custom is not None else _run_and_report(lab, lab.config("smoke", out=str(out_dir)))


def shard_fingerprints(data: LabData, ctx: Any) -> dict[str, Any]:
    """Under torchrun: the world size and a fingerprint of each rank's first batch (its shard), gathered."""
    if not ctx.is_distributed:
        return {}
    batch = next(iter(data.train))
    targets = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else batch[0]
    flat = targets.detach().flatten().double().cpu()
    weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64)
    mine = {"rank": ctx.rank, "items": int(flat.numel()), "fingerprint": round(float((flat * weights).sum()), 6)}
    gathered: list[Any] = [None] * ctx.world_size
    torch.distributed.all_gather_object(gathered, mine)
    if hasattr(data.train, "set_epoch"):
        data.train.set_epoch(1)
    return {"world_size": ctx.world_size, "first_batches": gathered}


LONG_RUN_MINUTES = 30.0
_ALLOW_LONG = [False]


class LongRunError(LabkitError, RuntimeError):
    """A run estimated to take longer than a notebook starts by itself (`.estimate`)."""

    def __init__(self, message: str, estimate: Estimate) -> None:
        super().__init__(message)
        self.estimate = estimate


@contextlib.contextmanager
def allow_long_runs() -> Iterator[None]:
    """Inside this block, notebook runs start whatever their estimated time (the panel's Train button)."""
    previous, _ALLOW_LONG[0] = _ALLOW_LONG[0], True
    try:
        yield
    finally:
        _ALLOW_LONG[0] = previous


@dataclass
class Estimate:
    """A run's estimated wall time from timed training steps and evaluation batches (after warm-up ones)."""

    seconds_per_step: float
    steps_per_epoch: int
    eval_batches: int
    epochs: int
    device: str
    seconds_per_eval_batch: float = 0.0

    seconds_per_epoch = property(lambda self: self.seconds_per_step * self.steps_per_epoch
                                 + self.seconds_per_eval_batch * self.eval_batches)
    seconds = property(lambda self: self.seconds_per_epoch * self.epochs)

    def __str__(self) -> str:
        return (f"estimated ~{duration(self.seconds_per_epoch)} per epoch, ~{duration(self.seconds)} for "
                f"{self.epochs} epoch{'s' if self.epochs != 1 else ''} on {self.device} "
                f"({self.seconds_per_step * 1000:.0f} ms per step of {self.steps_per_epoch})")


def duration(seconds: float) -> str:
    """'45 s', '26 min', '4 h 20 min'."""
    minutes = round(seconds / 60)
    return (f"{seconds:.0f} s" if seconds < 90 else f"{minutes} min" if minutes < 90
            else f"{minutes // 60} h {minutes % 60:02d} min")


#: every estimated run of this process: its estimated and measured seconds per epoch
ESTIMATES: list[dict[str, Any]] = []
#: the estimate's warm-up steps (a CPU's first steps build oneDNN kernels and grow the allocator: 2-3x slower)
ESTIMATE_WARMUP = 3
#: and it times steps until this many seconds have passed or a tenth of an epoch (at least 3 steps and
#: ESTIMATE_MIN_SECONDS, at most `steps` or the epoch: three 40 ms steps alone were off by 30 %)
ESTIMATE_SECONDS, ESTIMATE_MIN_SECONDS = 5.0, 0.5


def estimate_run(lab: Lab, cfg: LabConfig, data: LabData, model: nn.Module, task: Any,
                 splits: Sequence[str], device: torch.device, steps: int = 30) -> Estimate:
    """Time training steps (after `ESTIMATE_WARMUP`, for `ESTIMATE_SECONDS` or `steps`) and evaluation batches
    on copies of the model and optimizer (RNG restored, the loader rewound)."""
    saved = rng_state()
    probe = copy.deepcopy(model).to(device)
    task = task if task is not None else lab.task(cfg)
    trainer = Trainer(probe, make_optimizer(cfg, probe), task=task, device=device, amp=cfg.amp,
                      channels_last=cfg.channels_last, grad_clip=cfg.grad_clip)
    n_steps = len(data.train) if hasattr(data.train, "__len__") else steps
    times: list[float] = []

    def timed(done: int, _sums: Any) -> bool:
        synchronize(device)
        times.append(time.perf_counter())
        timed_steps = len(times) - 1 - ESTIMATE_WARMUP  # enough: `steps`, or 3 and 5 s or (1/10 epoch and 0.5 s)
        elapsed = times[-1] - times[ESTIMATE_WARMUP] if timed_steps > 0 else 0.0
        return timed_steps >= steps or timed_steps >= 3 and (elapsed >= ESTIMATE_SECONDS or timed_steps >= n_steps
                                                             // 10 and elapsed >= ESTIMATE_MIN_SECONDS)

    evals = [data.eval[s] for s in splits if data.eval.get(s) is not None]
    try:
        for _ in itertools.takewhile(lambda _: len(times) < ESTIMATE_WARMUP + 4 or n_steps < 4  # full-batch: 0.5 s
                                     and times[-1] - times[ESTIMATE_WARMUP] < 0.5, range(1000)):  # of epochs
            trainer.train_one_epoch(data.train, desc="estimate", after_step=timed)
        per_eval = sum(_seconds_per_batch(probe, loader, task, device, cfg) for loader in evals[:1])
    finally:
        set_rng_state(saved)
    if hasattr(data.train, "set_epoch"):
        data.train.set_epoch(1)
    first = min(ESTIMATE_WARMUP, len(times) - 2) if len(times) >= 2 else 0
    steps_taken = [b - a for a, b in itertools.pairwise(times[first:])]  # the median: one stalled step of a
    per_step = statistics.median(steps_taken) if steps_taken else 0.0  # short window must not set the estimate
    n_eval = sum(len(loader) for loader in evals if hasattr(loader, "__len__"))
    return Estimate(per_step, n_steps, n_eval, cfg.epochs, str(device), per_eval)


def _seconds_per_batch(model: nn.Module, loader: Any, task: Any, device: torch.device, cfg: LabConfig,
                       batches: int = 3) -> float:
    """Seconds per evaluation batch of `loader`: its first batch as warm-up, then its first `batches` timed (a
    one-batch loader, e.g. 1,000 val images in batches of 2,000, is timed on its one batch, not counted as free)."""
    def run(batch: Any) -> float:
        evaluate(model, [batch], task=task, device=device, amp=cfg.amp, channels_last=cfg.channels_last)
        synchronize(device)
        return time.perf_counter()

    first = next(iter(loader), None)
    if first is None:
        return 0.0
    start = run(first)
    ends = [run(batch) for batch in itertools.islice(loader, batches)]
    return (ends[-1] - start) / len(ends) if ends else 0.0  # a loader that cannot be read twice: not timed


def _train(lab: Lab, cfg: LabConfig, ctx: Any, data: LabData, model: nn.Module, task: Any,
           callbacks: Sequence[Callback], start: Checkpoint | None, progress: bool | None, splits: Sequence[str],
           out: Path, write_files: bool, checkpoints: bool) -> Run:
    """Fit (with progress, Ctrl-C/SIGTERM, checkpoints, early stopping on the validation monitor, the time
    budget and TensorBoard), reload best.pt, evaluate the final splits once."""
    ddp_options = {**lab.ddp_options, **({"sync_batchnorm": True} if cfg.sync_bn else {})}
    trained = dist.wrap_model(model, ctx.device, **ddp_options)
    optimizer = make_optimizer(cfg, trained)
    scheduler, interval = make_scheduler(cfg, optimizer, len(data.train))
    evals = {s: data.eval[s] for s in splits if data.eval.get(s) is not None}
    monitor = lab.monitor if lab.monitor and lab.monitor.split("_", 1)[0] in evals else None
    best = out / "checkpoints" / "best.pt"
    policy = None if not checkpoints else CheckpointPolicy(
        best.parent, every=lab.checkpoint_every, at_epochs=cfg.at_epochs, best=monitor is not None, monitor=monitor,
        every_seconds=cfg.checkpoint_minutes * 60 if cfg.checkpoint_minutes else None,
        config={"lab": lab.name, **cfg.to_dict(), "model_info": dict(data.info)})
    if policy is not None and monitor is not None and start is not None and ctx.is_main_process:
        best.parent.mkdir(parents=True, exist_ok=True)
        carry_best(start, best, monitor)
    tensorboard = cfg.tensorboard and write_files and checkpoints
    graph = lab.graph_input(cfg, data) if tensorboard and start is None else None
    extra = [TimeBudget(cfg.time_budget) if cfg.time_budget is not None else None,
             TensorBoardLogger(out / "tensorboard", hparams=cfg.to_dict(), graph_input=graph) if tensorboard else None,
             policy, EarlyStopping(monitor, patience=cfg.patience) if cfg.patience and monitor else None,
             Progress(progress, split_labels=data.split_names), StopOnSignal()]
    started = time.perf_counter()
    history = fit(trained, data.train, epochs=cfg.epochs, optimizer=optimizer, task=task, eval_data=evals,
                  metrics=lab.metrics, scheduler=scheduler, scheduler_interval=interval, device=ctx.device,
                  grad_clip=cfg.grad_clip, amp=cfg.amp, channels_last=cfg.channels_last, monitor=monitor,
                  callbacks=[*callbacks, *(cb for cb in extra if cb is not None)],
                  resume_from=start.path if start is not None else None)
    chosen = history.epoch[-1] if len(history) else 0
    dist.barrier()  # under torchrun rank 0 writes best.pt: every rank reloads the final one, not an older one
    if policy is not None and monitor is not None and best.is_file() and not history.diverged:
        chosen = load_checkpoint(best, model, map_location=ctx.device).epoch
    final = {} if history.diverged else {
        split: evaluate(model, data.eval[split], task=task, metrics=lab.metrics, device=ctx.device, amp=cfg.amp,
                        channels_last=cfg.channels_last, progress=progress_mode(progress) == "bar", desc=split)
        for split in lab.final_splits if data.eval.get(split) is not None}
    return Run(lab=lab.name, config=cfg, model=model, history=history, data=data, final=final, chosen_epoch=chosen,
               out_dir=out if write_files or checkpoints else None, seconds=time.perf_counter() - started,
               info=dict(data.info))


def write_outputs(lab: Lab, result: Run) -> None:
    """metrics.json and curves.png in the run folder; the final splits' metrics as TensorBoard scalars."""
    out, h, data = result.out_dir, result.history, result.data
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", {
        "lab": lab.name, "summary": result.summary(), "config": result.config.to_dict(),
        "chosen_epoch": result.chosen_epoch, "data": data.description if data is not None else "",
        "splits": dict(data.split_names) if data is not None else {}, "device": describe_device(result.config.device),
        "torch": torch.__version__, "written_by": {"rank": dist.rank(), "pid": os.getpid()}, "ddp": result.ddp,
        "history": h.to_dict()})
    if result.config.tensorboard and result.final and len(h) and (out / "tensorboard").is_dir():
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(out / "tensorboard")) as writer:
            for split, metrics in result.final.items():
                for key, value in metrics.items():
                    writer.add_scalar(f"{key}/{split}", value, h.epoch[-1])
    if len(h):
        keys = [k for k in (lab.curve_keys or h.keys()) if k in h]
        plots.save_figure(plots.plot_history(h, keys, title=run_title(lab, result),
                                 split_labels=data.split_names if data is not None else None), out / "curves.png")


def run_title(lab: Lab, result: Run) -> str:
    """A figure title that says which lab, recipe and size, and when the data were generated."""
    size, recipe = result.config.size, result.config.recipe
    note = " — smoke size, generated data" if size == "smoke" else f" — {size} size"
    return f"{lab.title}{'' if recipe == next(iter(lab.recipes)) else f', {recipe} recipe'}{note}"


def write_json(path: Path, record: Mapping[str, Any]) -> Path:
    return write_text_atomic(path, json.dumps(record, indent=2, default=str) + "\n")


def config_from_checkpoint(path: str | os.PathLike, expected_lab: str | None = None, **overrides: Any) -> LabConfig:
    """The config a checkpoint was trained with, with some fields changed; `expected_lab`: refuse
    (`UsageError`) a checkpoint that another lab wrote."""
    lab, cfg = _saved_config(load_checkpoint(path).config, path)
    if expected_lab is not None and lab.name != expected_lab:
        raise UsageError(f"{path} was written by `labkit run {lab.name}`, not by {expected_lab}: "
                         f"continue it with `labkit run {lab.name} --resume {path}`.")
    return cfg.replace(**{k: v for k, v in overrides.items() if v is not None})


def _saved_config(saved: Mapping[str, Any], path: str | os.PathLike) -> tuple[Lab, LabConfig]:
    name = saved.get("lab")
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{path} does not say which lab wrote it (no 'lab' in its config): it was not "
                              "written by `labkit run`, so its model cannot be rebuilt from it.")
    lab = get_lab(name)
    return lab, lab.Config.from_dict(saved)


def load_run(path: str | os.PathLike, device: str | torch.device | None = "cpu") -> Run:
    """Rebuild any lab's model from a checkpoint's own config and weights, reading the file once."""
    ckpt = load_checkpoint(path, map_location="cpu")
    lab, cfg = _saved_config(ckpt.config, path)
    info = dict(ckpt.config.get("model_info") or {})
    model = lab.build_model(cfg, info)
    load_model_state(model, ckpt.payload["model"], source=f"checkpoint {path}", saved_class=ckpt.model_class)
    prepare_model(model, torch.device(device if device is not None else "cpu"), cfg.channels_last).eval()  # as trained
    return Run(lab=lab.name, config=cfg, model=model, history=ckpt.history, out_dir=Path(path).parent.parent,
               chosen_epoch=ckpt.epoch, info=info)


def export_state_dict(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """A checkpoint's weights as a plain `state_dict` (the hand-in file, loaded without labkit); never over one."""
    ckpt, out = load_checkpoint(checkpoint, map_location="cpu"), Path(out)
    if out.exists() and (out.samefile(checkpoint) or _is_checkpoint(out)):
        what = "the checkpoint being exported" if out.samefile(checkpoint) else "a labkit checkpoint"
        raise UsageError(f"{out} is {what}: export never replaces one. Name a new file, e.g. hw7_123456_name.pth.")
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v.detach().clone()
             for k, v in ckpt.payload["model"].items()}
    if cast := [f"{k} ({v.dtype})" for k, v in state.items() if k.endswith((".weight", ".bias"))
                and not v.is_floating_point()]:  # e.g. weights cast to int8: a model would evaluate at chance
        raise CheckpointError(f"{checkpoint} holds weights that are not floating point: {', '.join(cast[:3])}.")
    if bad := [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]:
        raise CheckpointError(f"{checkpoint} holds NaN or infinite weights ({', '.join(bad[:3])}...): the run "
                              "diverged; export a checkpoint from before it did.")
    with atomic_write(out) as handle:
        torch.save(state, handle)
    return out


def _is_checkpoint(path: Path) -> bool:
    with contextlib.suppress(LabkitError):
        return bool(load_checkpoint(path).model_class)  # a plain state_dict loads with none
    return False


def add_export_arguments(parser: Any) -> None:
    parser.add_argument("checkpoint", type=Path, help="a labkit checkpoint (e.g. runs/mnist/checkpoints/best.pt)")
    parser.add_argument("out", type=Path, help="the plain state_dict file to write (e.g. hw7_123456_name.pth)")


def export_main(args: Any) -> dict[str, Any]:
    path = export_state_dict(args.checkpoint, args.out)
    print(f"wrote {path}: load it with model.load_state_dict(torch.load({str(path)!r}, weights_only=True))")
    return {"out": str(path)}
