"""Lab 04: ResNet18 on Tiny-ImageNet-200 — train, checkpoint, resume, evaluate, compare, ablate.

    labkit run tiny-imagenet --data ~/data/tiny-imagenet-200 --epochs 10 --lr 0.1
    labkit run tiny-imagenet --resume runs/tiny-imagenet/checkpoints/last.pt --epochs 20
    labkit run tiny-imagenet --resume runs/tiny-imagenet/checkpoints/best.pt --evaluate
    labkit compare runs/tiny-imagenet/checkpoints/epoch_005.pt runs/tiny-imagenet/checkpoints/epoch_010.pt
    torchrun --standalone --nproc_per_node=8 -m labkit run tiny-imagenet --epochs 10

Everything trains through `labkit.engine.fit`: SGD with momentum, a step / cosine /
one-cycle learning-rate schedule, top-1 and top-5 on val every epoch, TensorBoard
scalars and the model graph, checkpoints every epoch (`last.pt`), at chosen epochs
(`epoch_005.pt`, ...) and at the best val accuracy (`best.pt`). Under torchrun the
model is wrapped in DistributedDataParallel and each rank trains on its shard
(`labkit.distributed`); rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from labkit import config
from labkit import distributed as dist_util
from labkit.callbacks import Callback, FitState
from labkit.checkpoint import (
    CheckpointError,
    CheckpointPolicy,
    check_resume_length,
    load_checkpoint,
    unwrap,
)
from labkit.data import tiny_imagenet as tiny
from labkit.data.tiny_imagenet import TinyImageNetData
from labkit.device import seed_everything
from labkit.engine import evaluate, fit
from labkit.history import History
from labkit.models.resnet import ARCHS, build_model, parse_arch

METRICS = ("accuracy", "top5")
SCHEDULES = ("step", "cosine", "onecycle", "none")
#: model settings stored in every checkpoint's config, so a checkpoint rebuilds its own model
MODEL_KEYS = ("arch", "num_classes", "width", "dropout", "batch_norm", "residual")
_MODEL_DEFAULTS = {"width": 64, "dropout": 0.0, "batch_norm": True, "residual": True}


# --- sizes and data ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sizes:
    """How big a run is: the course's at full size, seconds on a CPU at smoke size."""

    epochs: int
    batch_size: int
    arch: str
    width: int
    at_epochs: tuple[int, ...]
    synthetic: bool


def sizes(smoke: bool | None = None) -> Sizes:
    smoke = config.is_smoke() if smoke is None else smoke
    if smoke:  # a narrow ResNet-10 on 10 synthetic classes: a few seconds on a CPU
        return Sizes(epochs=3, batch_size=32, arch="resnet10", width=8, at_epochs=(1, 2), synthetic=True)
    return Sizes(epochs=10, batch_size=128, arch="resnet18", width=64, at_epochs=(5, 10), synthetic=False)


#: the synthetic data set smoke runs write once under LABKIT_DATA/synthetic
SMOKE_DATA = {"n_classes": 10, "n_train_per_class": 16, "n_val_per_class": 6, "seed": 0}


def smoke_data_root() -> Path:
    """Where smoke runs keep their synthetic Tiny-ImageNet (written on first use)."""
    base = config.data_root() / "synthetic"
    if not (base / tiny.FOLDER / "val" / "val_annotations.txt").is_file():
        tiny.write_synthetic_tiny_imagenet(base, **SMOKE_DATA)
    return base / tiny.FOLDER


def find_root(root: str | Path | None = None, *, smoke: bool | None = None) -> Path:
    """The data set a run uses: `root` if given; at smoke size the synthetic one; else
    `$LABKIT_DATA/tiny-imagenet-200`, else the read-only `../shared/datasets/tiny-imagenet-200`."""
    if root is not None:
        return tiny.resolve_root(root)
    if sizes(smoke).synthetic:
        return smoke_data_root()
    own = config.data_root() / tiny.FOLDER
    shared = config.shared_datasets()
    if not own.exists() and shared is not None and (shared / tiny.FOLDER / "wnids.txt").is_file():
        return shared / tiny.FOLDER
    return tiny.resolve_root(own)


def load_data(root: str | Path | None = None, *, smoke: bool | None = None, batch_size: int | None = None,
              device: str | torch.device | None = "cpu", seed: int = 0, train_per_class: int | None = None,
              val_per_class: int | None = None, rank: int = 0, world_size: int = 1,
              verbose: bool = True) -> TinyImageNetData:
    """Train/val loaders over the decoded-once cache. Smoke size uses synthetic data unless `root` is given."""
    size = sizes(smoke)
    return tiny.tiny_imagenet_loaders(
        find_root(root, smoke=smoke), batch_size=batch_size or size.batch_size, device=device, seed=seed,
        train_per_class=train_per_class, val_per_class=val_per_class, rank=rank, world_size=world_size,
        verbose=verbose)


# --- models ------------------------------------------------------------------------------------------------

def model_config(arch: str = "resnet18", num_classes: int = 200, width: int = 64, dropout: float = 0.0,
                 batch_norm: bool = True, residual: bool = True) -> dict[str, Any]:
    """The settings that rebuild a model; stored in checkpoints (validated here)."""
    parse_arch(arch)
    return {"arch": arch, "num_classes": int(num_classes), "width": int(width), "dropout": float(dropout),
            "batch_norm": bool(batch_norm), "residual": bool(residual)}


def model_from_config(settings: Mapping[str, Any], pretrained: bool = False) -> nn.Module:
    """Build the model a config (or a checkpoint's config) describes; plain ResNet18 is torchvision's."""
    missing = [k for k in ("arch", "num_classes") if k not in settings]
    if missing:
        raise CheckpointError(f"the run config has no {', '.join(missing)}: it was not written by "
                              "labkit's tiny-imagenet lab, so the model cannot be rebuilt from it.")
    options = {k: settings[k] for k in _MODEL_DEFAULTS if k in settings and settings[k] != _MODEL_DEFAULTS[k]}
    return build_model(settings["arch"], num_classes=int(settings["num_classes"]), pretrained=pretrained,
                       **options)


# --- training ----------------------------------------------------------------------------------------------

class TimeBudget(Callback):
    """Stop after the epoch when another epoch (at the mean epoch time so far) would exceed `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self._start = 0.0
        self._epochs = 0

    def on_fit_start(self, state: FitState) -> None:
        self._start = time.perf_counter()
        self._epochs = 0

    def on_epoch_end(self, state: FitState) -> None:
        self._epochs += 1
        elapsed = time.perf_counter() - self._start
        if elapsed + elapsed / self._epochs > self.seconds and state.epoch < state.epochs:
            state.stop = True
            state.history.stop_reason = (f"time budget of {self.seconds:.0f} s reached after epoch "
                                         f"{state.epoch} ({elapsed:.0f} s)")


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, epochs: int, steps_per_epoch: int,
                   step_size: int | None = None, gamma: float = 0.1) -> tuple[Any, str]:
    """(scheduler, interval for fit()).

    step: ×`gamma` every `step_size` epochs (default a third of the run, like PyTorch's ImageNet
    example's 30 of 90); cosine: cosine decay to 0 over the epochs; onecycle: per-step warm-up
    over 15 % of the steps then cosine decay (the fastest in a short budget); none: constant.
    """
    if schedule == "step":
        size = step_size or max(1, math.ceil(epochs / 3))
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=size, gamma=gamma), "epoch"
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1)), "epoch"
    if schedule == "onecycle":
        peak = optimizer.param_groups[0]["lr"]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peak, total_steps=max(epochs * steps_per_epoch, 1), pct_start=0.15,
            cycle_momentum=False), "step"
    if schedule == "none":
        return None, "epoch"
    raise ValueError(f"unknown schedule {schedule!r}: use one of {', '.join(SCHEDULES)}.")


@dataclass
class TinyRun:
    """A trained model, its History, where its files are, and the config stored in its checkpoints."""

    model: nn.Module
    history: History
    run_dir: Path | None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def checkpoint_dir(self) -> Path | None:
        return self.run_dir / "checkpoints" if self.run_dir is not None else None


def write_graph(log_dir: Path, model: nn.Module, example: torch.Tensor) -> bool:
    """The model graph for TensorBoard's GRAPHS tab (a text summary if tracing fails)."""
    from torch.utils.tensorboard import SummaryWriter

    from labkit.tensorboard import add_graph_or_summary

    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        return add_graph_or_summary(writer, unwrap(model), example)
    finally:
        writer.close()


def train_tiny_imagenet(
    data: TinyImageNetData,
    *,
    arch: str | None = None,
    epochs: int | None = None,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    step_size: int | None = None,
    gamma: float = 0.1,
    width: int | None = None,
    dropout: float = 0.0,
    batch_norm: bool = True,
    residual: bool = True,
    pretrained: bool = False,
    label_smoothing: float = 0.0,
    out_dir: str | Path | None = None,
    at_epochs: Sequence[int] | None = None,
    resume_from: str | Path | None = None,
    tensorboard: bool = True,
    time_budget: float | None = None,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> TinyRun:
    """Train a ResNet on Tiny-ImageNet with SGD + momentum; top-1 and top-5 on val every epoch.

    `out_dir` receives `checkpoints/` (last.pt every epoch, epoch_NNN.pt at `at_epochs`, best.pt
    at the best val accuracy) and `tensorboard/` (scalars and the graph). `resume_from` continues
    a run from a checkpoint up to `epochs`. `time_budget` (seconds) stops early when the next
    epoch would not fit. Under torchrun the model is wrapped in DistributedDataParallel.
    """
    size = sizes()
    arch = arch or size.arch
    width = width if width is not None else (size.width if arch == size.arch else 64)
    epochs = epochs if epochs is not None else size.epochs
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}: use one of {', '.join(SCHEDULES)}.")
    seed_everything(seed)
    device = torch.device(device) if device is not None else data.train.device
    settings = model_config(arch, data.num_classes, width, dropout, batch_norm, residual)
    model = model_from_config(settings, pretrained=pretrained).to(device)
    run_dir = Path(out_dir) if out_dir is not None else None
    main_process = dist_util.is_main_process()
    if tensorboard and run_dir is not None and main_process and resume_from is None:
        write_graph(run_dir / "tensorboard", model, torch.zeros(1, 3, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, device=device))
    model = dist_util.wrap_model(model, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler, interval = make_scheduler(optimizer, schedule, epochs, len(data.train), step_size, gamma)
    run_config = {"lab": "tiny-imagenet", **settings, "pretrained": pretrained, "epochs": epochs, "lr": lr,
                  "momentum": momentum, "weight_decay": weight_decay, "schedule": schedule,
                  "batch_size": data.train.batch_size * data.train.world_size, "seed": seed,
                  "world_size": data.train.world_size}
    policy = None
    if run_dir is not None:
        chosen = tuple(at_epochs) if at_epochs is not None else size.at_epochs
        policy = CheckpointPolicy(run_dir / "checkpoints", every=1, at_epochs=chosen, best=True,
                                  monitor="val_accuracy")
    extra: list[Callback] = list(callbacks)
    if time_budget is not None:
        extra.append(TimeBudget(time_budget))
    history = fit(
        model, data.train, epochs=epochs, optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=label_smoothing),
        eval_data={"val": data.val}, metrics=METRICS, scheduler=scheduler, scheduler_interval=interval,
        device=device, amp=True, channels_last=True, checkpoints=policy, callbacks=extra,
        tensorboard=run_dir / "tensorboard" if (tensorboard and run_dir is not None) else None,
        resume_from=resume_from, progress=progress, monitor="val_loss", config=run_config,
    )
    return TinyRun(unwrap(model), history, run_dir, run_config)


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The model a checkpoint describes, with its weights, and the checkpoint's config."""
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    model = model_from_config(ckpt.config)
    load_checkpoint(checkpoint, model=model)
    return model.to(device), {**ckpt.config, "epoch": ckpt.epoch}


def evaluate_checkpoint(checkpoint: str | Path, data: TinyImageNetData,
                        device: str | torch.device | None = None) -> dict[str, float]:
    """Val loss, top-1 and top-5 of a checkpoint, without training (PyTorch example's --evaluate)."""
    device = torch.device(device) if device is not None else data.val.device
    model, settings = load_model(checkpoint, device)
    if int(settings["num_classes"]) != data.num_classes:
        raise CheckpointError(f"{checkpoint} predicts {settings['num_classes']} classes but the data has "
                              f"{data.num_classes}: evaluate it on the data set it was trained on.")
    return evaluate(model, data.val, metrics=METRICS, device=device)


# --- comparing two checkpoints ------------------------------------------------------------------------------

@dataclass
class Comparison:
    """Where two checkpoints disagree on val: the rows, and the CSV and image grid written."""

    rows: list[Any]
    csv: Path
    grid: Path
    accuracy_a: float
    accuracy_b: float
    total: int


def compare_checkpoints(ckpt_a: str | Path, ckpt_b: str | Path, data: TinyImageNetData, out_dir: str | Path,
                        max_images: int = 16, device: str | torch.device | None = None) -> Comparison:
    """Predict val with both checkpoints; write `disagreements.csv` and `disagreements.png` to `out_dir`.

    Built on `labkit.compare` (weights loaded with weights_only=True, plain CSV, no pickle).
    """
    import matplotlib.pyplot as plt

    from labkit import compare

    out_dir = Path(out_dir)
    device = torch.device(device) if device is not None else data.val.device
    settings_a = load_checkpoint(ckpt_a).config
    all_rows = compare.compare_checkpoints(
        ckpt_a, ckpt_b, lambda: model_from_config(settings_a), data.val, class_names=data.class_names,
        image_ids=data.val_files, device=device, only_disagreements=False)
    rows = [row for row in all_rows if row.disagree]
    csv_path = compare.save_rows_csv(rows, out_dir / "disagreements.csv")
    figure = compare.plot_disagreements(rows, data.val_images, path=out_dir / "disagreements.png",
                                        max_images=max_images, labels=(Path(ckpt_a).stem, Path(ckpt_b).stem))
    plt.close(figure)
    total = len(all_rows)
    return Comparison(rows, csv_path, out_dir / "disagreements.png",
                      sum(r.correct_a for r in all_rows) / total, sum(r.correct_b for r in all_rows) / total, total)


# --- ablations ---------------------------------------------------------------------------------------------

#: one change at a time from the baseline (a ResNet-18 shape, cosine decay)
ABLATIONS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "dropout 0.3": {"dropout": 0.3},
    "no batch norm": {"batch_norm": False},
    "no lr decay": {"schedule": "none"},
    "no residual": {"residual": False},
    "ResNet-10": {"depth": 10},
    "ResNet-34": {"depth": 34},
}


def run_ablations(data: TinyImageNetData, variants: Mapping[str, Mapping[str, Any]] | None = None, *,
                  epochs: int | None = None, lr: float = 0.1, width: int | None = None, depth: int = 18,
                  out_dir: str | Path | None = None, device: str | torch.device | None = None,
                  seed: int = 0):
    """Train each variant (settings override the baseline: depth, dropout, batch_norm, residual,
    schedule, lr) with `labkit.ablation.run_ablation`; returns its `AblationResult` (table + curves).

    Width defaults to the smoke size's (narrow, for seconds-long runs) or 64.
    """
    from labkit.ablation import run_ablation

    size = sizes()
    width = width if width is not None else size.width

    def run_one(name: str, settings: dict[str, Any]) -> History:
        settings = dict(settings)
        variant_depth = int(settings.pop("depth", depth))
        run = train_tiny_imagenet(
            data, arch=f"resnet{variant_depth}", epochs=epochs, lr=float(settings.pop("lr", lr)), width=width,
            schedule=settings.pop("schedule", "cosine"), dropout=float(settings.pop("dropout", 0.0)),
            batch_norm=bool(settings.pop("batch_norm", True)), residual=bool(settings.pop("residual", True)),
            tensorboard=False, device=device, seed=seed, progress=False, **settings)
        return run.history

    return run_ablation(variants if variants is not None else ABLATIONS, run_one, metric="accuracy",
                        curve_keys=("val_accuracy", "train_accuracy", "val_top5"), out_dir=out_dir)


# --- summaries and plots -----------------------------------------------------------------------------------

def summary(history: History) -> dict[str, float]:
    """The figures a run is judged by: final val top-1/top-5, final train top-5, best val top-1, seconds."""
    return {"val_accuracy": history.last("val_accuracy"), "val_top5": history.last("val_top5"),
            "train_top5": history.last("train_top5"), "best_val_accuracy": history.best("val_accuracy")[1],
            "epochs": history.epoch[-1], "seconds": history.total_seconds}


def plot_run(history: History, path: str | Path | None = None, title: str | None = None):
    """Loss, top-1 and top-5 per epoch, train against val: the over-fitting gap at a glance."""
    from labkit.plots import new_figure, plot_history

    return plot_history(history, ["train_loss", "val_loss", "train_accuracy", "val_accuracy",
                                  "train_top5", "val_top5"], path=path, title=title, figure=new_figure((12, 3.4)))


# --- command line ------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=None,
                        help="the tiny-imagenet-200 folder (or its parent); default $LABKIT_DATA/tiny-imagenet-200")
    parser.add_argument("--arch", default=None, choices=ARCHS,
                        help="resnet18 = torchvision's (the course model); '-64' = 3×3 stem, no max-pool")
    parser.add_argument("--width", type=int, default=None, help="channels of the first stage (default 64)")
    parser.add_argument("--epochs", type=int, default=None, help="total epochs (default 10; smoke 3)")
    parser.add_argument("--lr", type=float, default=0.1, help="initial (peak for onecycle) learning rate")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--schedule", choices=SCHEDULES, default="cosine", help="learning-rate decay")
    parser.add_argument("--step-size", type=int, default=None, help="epochs between ×0.1 steps (schedule step)")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch size (default 128)")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout before the classifier")
    parser.add_argument("--no-batch-norm", action="store_true", help="ablation: no batch norm")
    parser.add_argument("--no-residual", action="store_true", help="ablation: no shortcut connections")
    parser.add_argument("--pretrained", action="store_true", help="start from ImageNet weights (needs internet)")
    parser.add_argument("--at-epochs", default=None,
                        help="comma-separated epochs to keep checkpoints of (default 5,10)")
    parser.add_argument("--resume", type=Path, default=None, metavar="CKPT",
                        help="continue training from this checkpoint (or evaluate it with --evaluate)")
    parser.add_argument("--evaluate", action="store_true", help="only evaluate the --resume checkpoint on val")
    parser.add_argument("--train-per-class", type=int, default=None, help="use only N train images per class")
    parser.add_argument("--val-per-class", type=int, default=None, help="use only N val images per class")
    parser.add_argument("--time-budget", type=float, default=None, help="stop when the next epoch would pass N s")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: best available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/tiny-imagenet)")
    parser.add_argument("--smoke", action="store_true", help="tiny run on synthetic data (also LABKIT_SMOKE=1)")


def _epochs_list(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SystemExit(f"--at-epochs expects comma-separated epoch numbers such as 5,10, got {text!r}") from None


def main(args: argparse.Namespace) -> dict[str, Any] | int:
    if args.smoke:
        os.environ["LABKIT_SMOKE"] = "1"
    if args.evaluate and args.resume is None:
        print("--evaluate needs the checkpoint to evaluate: --resume CKPT --evaluate", file=sys.stderr)
        return 2
    out = args.out or config.runs_dir() / "tiny-imagenet"
    size = sizes()
    with dist_util.session(args.device) as ctx:
        say = print if ctx.is_main_process else (lambda *a, **k: None)
        batch = dist_util.per_rank_batch_size(args.batch_size or size.batch_size, ctx.world_size)
        try:
            with _rank_zero_first(ctx.is_distributed, ctx.is_main_process):  # one process writes caches
                data = load_data(args.data, batch_size=batch, device=ctx.device, seed=args.seed,
                                 train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                                 rank=ctx.rank, world_size=ctx.world_size, verbose=ctx.is_main_process)
        except (FileNotFoundError, tiny.TinyImageNetLayoutError) as err:
            print(err, file=sys.stderr)
            return 1
        say(f"Tiny-ImageNet: {len(data.train.tensors[0]):,} train / {len(data.val_files):,} val images, "
            f"{data.num_classes} classes · {ctx.device} × {ctx.world_size} process(es)")
        try:
            return _train_or_evaluate(args, data, ctx, out, say)
        except CheckpointError as err:
            print(err, file=sys.stderr)
            return 1


@contextlib.contextmanager
def _rank_zero_first(distributed: bool, main_process: bool) -> Iterator[None]:
    """Under DDP, rank 0 runs the block (e.g. builds the image cache) before the other ranks do.

    Rank 0 reaches the barrier even when the block fails, so the others run it too and fail the
    same way instead of waiting for the process-group timeout.
    """
    if distributed and not main_process:
        dist_util.barrier()
    try:
        yield
    finally:
        if distributed and main_process:
            dist_util.barrier()


def _train_or_evaluate(args: argparse.Namespace, data: TinyImageNetData, ctx: Any, out: Path,
                       say: Any) -> dict[str, Any]:
    if args.evaluate:
        result = evaluate_checkpoint(args.resume, data, ctx.device)
        say(f"{args.resume}: val loss {result['loss']:.4f}, top-1 {100 * result['accuracy']:.2f} %, "
            f"top-5 {100 * result['top5']:.2f} %")
        return {"checkpoint": str(args.resume), **{f"val_{k}": v for k, v in result.items()}}
    saved: dict[str, Any] = {}
    if args.resume is not None:  # rebuild the checkpoint's model and optimiser, whatever the flags say
        saved = load_checkpoint(args.resume).config
        check_resume_length(args.resume, saved, args.epochs)
    run = train_tiny_imagenet(
        data, arch=saved.get("arch", args.arch), epochs=args.epochs or saved.get("epochs"),
        lr=saved.get("lr", args.lr), momentum=saved.get("momentum", args.momentum),
        weight_decay=saved.get("weight_decay", args.weight_decay), schedule=saved.get("schedule", args.schedule),
        step_size=args.step_size, width=saved.get("width", args.width),
        dropout=saved.get("dropout", args.dropout), batch_norm=saved.get("batch_norm", not args.no_batch_norm),
        residual=saved.get("residual", not args.no_residual), pretrained=args.pretrained,
        out_dir=out, at_epochs=_epochs_list(args.at_epochs), resume_from=args.resume,
        time_budget=args.time_budget, device=ctx.device, seed=args.seed)
    metrics: dict[str, Any] = {"arch": run.config["arch"], **summary(run.history)}
    if ctx.is_main_process:
        plot_run(run.history, out / "curves.png", title=run.config["arch"])
        (out / "metrics.json").write_text(json.dumps({**metrics, "history": run.history.to_dict()}, indent=2))
    say(run.history.table(["train_loss", "train_top5", "val_loss", "val_accuracy", "val_top5"]))
    say(f"val top-1 {100 * metrics['val_accuracy']:.2f} %, top-5 {100 * metrics['val_top5']:.2f} % after "
        f"epoch {metrics['epochs']}; checkpoints, curves and TensorBoard logs under {out}/ "
        f"(tensorboard --logdir {out})")
    return metrics


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ckpt_a", type=Path, help="first checkpoint (e.g. .../epoch_005.pt)")
    parser.add_argument("ckpt_b", type=Path, help="second checkpoint (e.g. .../epoch_010.pt)")
    parser.add_argument("--data", type=Path, default=None, help="the tiny-imagenet-200 folder")
    parser.add_argument("--val-per-class", type=int, default=None, help="compare on N val images per class")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/tiny-imagenet-compare)")
    parser.add_argument("--max-images", type=int, default=16, help="images in the grid")
    parser.add_argument("--device", default=None)
    parser.add_argument("--smoke", action="store_true", help="use the synthetic smoke data")


def compare_main(args: argparse.Namespace) -> dict[str, Any] | int:
    if args.smoke:
        os.environ["LABKIT_SMOKE"] = "1"
    out = args.out or config.runs_dir() / "tiny-imagenet-compare"
    try:
        data = load_data(args.data, device=args.device or "cpu", val_per_class=args.val_per_class)
        result = compare_checkpoints(args.ckpt_a, args.ckpt_b, data, out, args.max_images)
    except (FileNotFoundError, tiny.TinyImageNetLayoutError, CheckpointError) as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{len(result.rows)} of {result.total} val images are predicted differently; "
          f"top-1 {100 * result.accuracy_a:.2f} % ({args.ckpt_a.name}) vs {100 * result.accuracy_b:.2f} % "
          f"({args.ckpt_b.name})")
    for row in result.rows[:10]:
        print(f"  {row.image}: true {row.true_class!r}, A {row.prediction_a!r}, B {row.prediction_b!r}")
    print(f"table: {result.csv}\nimage grid: {result.grid}")
    return {"disagreements": len(result.rows), "total": result.total, "accuracy_a": result.accuracy_a,
            "accuracy_b": result.accuracy_b, "csv": str(result.csv), "grid": str(result.grid)}


def smoke(out_dir: Path) -> dict[str, float]:
    """Train at smoke size with checkpoints, evaluate one, compare two; write curves and the comparison."""
    os.environ["LABKIT_SMOKE"] = "1"
    out_dir = Path(out_dir)
    data = load_data(verbose=False)
    run = train_tiny_imagenet(data, out_dir=out_dir, tensorboard=False, progress=False)
    plot_run(run.history, out_dir / "curves.png")
    ckpts = run.checkpoint_dir
    evaluated = evaluate_checkpoint(ckpts / "best.pt", data)
    compared = compare_checkpoints(ckpts / "epoch_001.pt", ckpts / "epoch_002.pt", data, out_dir / "compare")
    return {**summary(run.history), "best_ckpt_val_accuracy": evaluated["accuracy"],
            "disagreements": len(compared.rows)}
