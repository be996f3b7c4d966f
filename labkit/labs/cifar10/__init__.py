"""Lab 02: ResNet-20 on CIFAR-10, the course recipe (lr 0.1 then 0.01) and a faster 10-epoch recipe.

The evaluation split (test, or 5,000 held-out training images) is evaluated every epoch for the course's
curves, as monitoring only: nothing is chosen by it (no best.pt, no early stopping).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from matplotlib.figure import Figure
from torch import nn

from labkit import config, runner
from labkit.callbacks import Callback
from labkit.data.tensor_loader import TensorLoader
from labkit.device import describe_device, model_device
from labkit.distributed import per_rank_batch_size
from labkit.engine import predict
from labkit.errors import DataError, UsageError
from labkit.lab import Lab, LabConfig, LabData, option, register
from labkit.labs.cifar10 import data as cifar
from labkit.labs.cifar10.data import CIFAR10Split
from labkit.labs.cifar10.model import cifar_resnet
from labkit.metrics import confusion_matrix
from labkit.optim import SCHEDULES
from labkit.plots import (
    image_grid,
    integer_epochs,
    new_figure,
    plot_curves,
    plot_history,
    save_figure,
)

SYNTHETIC = (192, 128)  # smoke size without --data: generated train / test images (the pickle layout)
EVAL_BATCH = 1000
COURSE = {"optimizer": "sgd", "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4, "batch_size": 128,
          "lr": 0.1, "schedule": "multistep", "gamma": 0.1, "label_smoothing": 0.0, "epochs": 10}


@dataclass(frozen=True)
class Config(LabConfig):
    """Lab 02's settings; the defaults are the course script (the `course` recipe) at full size."""

    lr: float = option(0.1, "initial (course) or peak (fast) learning rate", gt=0)
    weight_decay: float = option(5e-4, "weight decay (L2 on every parameter, as the course script)", min=0)
    schedule: str = option("multistep", "learning-rate schedule; multistep: x gamma after half the epochs "
                           "(plateau is not offered: it would steer by the test split)",
                           choices=tuple(s for s in SCHEDULES if s != "plateau"))
    depth: int = option(20, "ResNet depth 6n+2: 8, 14, 20, 32, 44, 56, 110", min=8)
    compile: bool = option(False, "torch.compile the model (CUDA only; ignored elsewhere)")
    download: bool = option(False, "download the official pickles (163 MB, md5-checked) when no copy is found")
    holdout: int = option(cifar.HOLDOUT, "training images held out as the evaluation split (the same number "
                          "per class, fixed seed) when the data have no test split", min=0)
    train_subset: int | None = option(None, "train on a class-balanced subset of this many images (none: all)",
                                      min=10)
    # the comparisons beyond the main run (optimizer re-creation, fast recipe) in the notebook and `reproduce`
    compare_depth: int | None = option(None, "comparison runs: ResNet depth (None: --depth)", min=8, cli=False)
    compare_subset: int | None = option(None, "comparison runs: training images (None: --train-subset)", min=10,
                                        cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.depth - 2) % 6:
            raise UsageError(f"--depth must be 6n+2 (8, 14, 20, 32, 44, 56, 110), got {self.depth}.")
        if self.patience:
            raise UsageError("--patience must stay 0: Lab 02 has no validation split to stop on (its per-epoch "
                              "split is the test or hold-out split, for monitoring only).")


@register
class Cifar10(Lab):
    name = "cifar10"
    title = "Lab 02: ResNet on CIFAR-10"
    Config = Config
    recipes: ClassVar[dict[str, dict[str, Any]]] = {
        # the course script: SGD momentum 0.9, wd 5e-4, batch 128, lr 0.1 for 5 epochs then 0.01 for 5
        "course": dict(COURSE),
        # the same budget (10 epochs, batch 128): warm-up + cosine one-cycle, Nesterov, label smoothing
        "fast": {**COURSE, "lr": 0.2, "nesterov": True, "label_smoothing": 0.1, "schedule": "onecycle",
                 "pct_start": 0.2, "div_factor": 10.0, "final_div_factor": 100.0, "cycle_momentum": False},
    }
    sizes: ClassVar[dict[str, dict[str, Any]]] = {
        # seconds on a CPU: ResNet-8 on 192 generated images (see SYNTHETIC) unless --data is given
        "smoke": {"depth": 8, "epochs": 4, "batch_size": 32},
        # the course's experiment on real data: ResNet-20 on all training images for the course's 10 epochs (bf16
        # and channels_last on a CPU with native bf16; results/cifar10/laptop/reference.json has the wall time);
        # the notebook's comparisons run ResNet-8 on 5,000 of the images (500 per class) to stay within ~20 min
        "laptop": {"compare_depth": 8, "compare_subset": 5_000},
        # the course report's experiment: ResNet-20, all the training data, 10 epochs (a GPU recommended)
        "full": {},
    }
    epoch_splits = ("test",)   # the test (or hold-out) split after every epoch: curves, monitoring only
    monitor = None             # nothing is chosen by it: no best.pt, no early stopping
    final_splits = ("test",)   # evaluated once, with the last epoch's weights
    curve_keys = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")
    unused_options = ("patience", "patience_lr")

    def config(self, size: str = "full", recipe: str | None = None, **overrides: Any) -> LabConfig:
        """The size and recipe's config; unless given, `at_epochs` keeps the lr-drop and the last epoch."""
        cfg = super().config(size, recipe, **overrides)
        return cfg if overrides.get("at_epochs") is not None else cfg.replace(at_epochs=keep_epochs(cfg))

    def comparison(self, cfg: Config) -> Config:
        """The config of a comparison run beside `cfg` (its `compare_depth` and `compare_subset`): `cfg` itself
        where those are unset, as at full size."""
        depth, subset = cfg.compare_depth or cfg.depth, cfg.compare_subset or cfg.train_subset
        return cfg if (depth, subset) == (cfg.depth, cfg.train_subset) else cfg.replace(
            depth=depth, train_subset=subset, compare_depth=None, compare_subset=None)

    def load_data(self, cfg: Config, ctx: Any) -> LabData:
        train, held, where = read_splits(cfg, verbose=ctx.is_main_process)
        total = len(train)
        if cfg.train_subset is not None and cfg.train_subset < total:
            train = balanced_subset(train, cfg.train_subset)
        shard = {"rank": ctx.rank, "world_size": ctx.world_size, "device": ctx.device}
        train_loader = TensorLoader(train.images, train.labels, shuffle=True, transform=cifar.train_transform(),
                                    batch_size=per_rank_batch_size(cfg.batch_size, ctx.world_size),
                                    seed=cfg.seed, **shard)
        eval_loader = TensorLoader(held.images, held.labels, batch_size=EVAL_BATCH,
                                   transform=cifar.eval_transform(), **shard)
        description = (f"CIFAR-10 {where}: train {len(train):,} images"
                       + (f" (a class-balanced subset of {total:,})" if len(train) < total else "")
                       + f"; evaluation split: {held.description} ({len(held):,} images)")
        if ctx.is_main_process:
            print(f"{description} · {describe_device(ctx.device)} × {ctx.world_size} process(es)")
        return LabData(train=train_loader, eval={"test": eval_loader}, description=description,
                       info={"num_classes": len(train.classes), "classes": list(train.classes)},
                       source=CifarData(train, held), split_names={"train": train.description,
                                                                   "test": held.description})

    def build_model(self, cfg: Config, info: Mapping[str, Any]) -> nn.Module:
        return cifar_resnet(cfg.depth, int(info.get("num_classes", len(cifar.CLASSES))))

    def report(self, run: runner.Run) -> dict[str, Any]:
        """curves.png with the lr drop and the split's name, per-class accuracy, some mistakes, a table."""
        out, label, split, h = run.out_dir, run.data.split_label("test"), run.data.source.eval, run.history
        if not len(h):
            print(f"no epoch completed ({h.stop_reason or 'stopped'}): no curves, per-class accuracy or mistakes")
            return {"eval_split": label}
        plot_course_curves(run, out / "curves.png")
        print(epoch_table(run))
        if h.diverged:
            print(f"diverged at epoch {h.epoch[-1]}: the weights are not finite, so no per-class accuracy or "
                  f"mistakes; curves under {out}/")
            return {"eval_split": label}
        preds = predictions(run.model, TensorLoader(split.images, split.labels, batch_size=EVAL_BATCH,  # unsharded
                                                    transform=cifar.eval_transform(), device=model_device(run.model)))
        plot_per_class(per_class_accuracy(preds, split.labels, len(split.classes)), split.classes, label,
                       out / "per_class.png", title=f"per-class accuracy\n{run_title(run)}")
        images, titles = misclassified(preds, split, count=16)
        image_grid(images, titles, title=run_title(run, f"misclassified {label} images (true → predicted)"),
                   path=out / "misclassified.png", empty="no mistakes")
        print(f"{label} accuracy {run.final['test']['accuracy']:.4f} after {len(h)} epochs ({run.seconds:.0f} s); "
              f"the {label} split was evaluated every epoch for the curves only, nothing was chosen by it. Curves, "
              f"per-class accuracy, mistakes, checkpoints and TensorBoard logs under {out}/")
        return {"eval_split": label}

    def reference(self, size: str, out_dir: Path) -> dict[str, dict[str, Any]]:
        """`labkit reproduce cifar10`: the course recipe, the same with the optimizer re-created every epoch (not
        at full size) and the fast recipe (unless LABKIT_REFERENCE_FAST=0), each into `out_dir/<name>/`."""
        out_dir = Path(out_dir)
        cfg = self.config(size, "course", out=str(out_dir / "course"))
        data = runner.load_data(self, cfg)
        probe = OptimizerProbe()
        course = runner.run(self, cfg, data=data, callbacks=[probe])
        self.report(course)
        numbers = {"course": reference_numbers(course)}
        small = self.comparison(cfg)  # the comparisons: at laptop size smaller than the main run
        if small != cfg:
            small = small.replace(out=str(out_dir / "course-small"))
            small_data = runner.load_data(self, small)
            course = runner.run(self, small, data=small_data, callbacks=[probe := OptimizerProbe()])
            numbers["course_small"] = reference_numbers(course)
        else:
            small_data = data
        if size != "full":
            result = optimizer_recreation(small, small_data, correct=(course, probe), out=str(out_dir / "recreated"),
                                          write_files=True, checkpoints=True)
            plot_recreation(result, out_dir / "optimizer_recreation.png")
            runner.write_json(out_dir / "optimizer_recreation.json", result.to_dict())
            numbers["recreated"] = reference_numbers(result.runs[RECREATED])
        if os.environ.get("LABKIT_REFERENCE_FAST", "1") != "0":  # 0: skip the fast recipe (a busy machine)
            fast = runner.run(self, self.comparison(self.config(size, "fast", out=str(out_dir / "fast"))),
                              data=small_data)
            self.report(fast)
            plot_recipes({"course": course, "fast": fast}, out_dir / "recipes.png")
            numbers["fast"] = reference_numbers(fast)
        return numbers


LAB = Cifar10()


# --- data --------------------------------------------------------------------------------------------------

@dataclass
class CifarData:
    """The uint8 splits behind a LabData, on the CPU."""

    train: CIFAR10Split
    eval: CIFAR10Split


def _holds_cifar(root: Path | None) -> bool:
    try:
        return root is not None and bool(cifar.detect_cifar10_layout(root))
    except DataError:
        return False


def default_root() -> Path:
    """`LABKIT_DATA` when it holds CIFAR-10; else the shared read-only copy when it does; else `LABKIT_DATA`."""
    shared = config.shared_datasets()
    return shared if not _holds_cifar(config.data_root()) and _holds_cifar(shared) else config.data_root()


def synthetic_root() -> Path:
    """Where the smoke size generates its data: a cache folder, never LABKIT_DATA (read-only on a course server)."""
    return config.cache_dir() / "synthetic" / "cifar10"


def read_splits(cfg: Config, verbose: bool = True) -> tuple[CIFAR10Split, CIFAR10Split, str]:
    """(train, evaluation split, where they came from): `cfg.data` at every size; without it generated data at
    smoke size, else `default_root()`."""
    if cfg.data is None and cfg.size == "smoke":
        root = synthetic_root()
        if not all((cifar.cifar10_folder(root) / name).is_file() for name in cifar.required_files()):
            cifar.write_synthetic_cifar10(root, *SYNTHETIC, seed=0)
        train, test = cifar.load_cifar10_splits(root)
        return (train, CIFAR10Split(test.images, test.labels, test.classes, "test", "test (synthetic)"),
                f"synthetic pickles in {cifar.cifar10_folder(root)} (generated at smoke size: not real CIFAR-10)")
    root = Path(cfg.data).expanduser() if cfg.data is not None else default_root()
    try:
        train, held = cifar.load_cifar10_train_eval(root, download=cfg.download, holdout=cfg.holdout, seed=0,
                                                    verbose=verbose)
    except DataError as err:
        raise DataError(f"{err} From the command line: `labkit run cifar10 --data DIR`, or "
                        "`labkit run cifar10 --download`.") from err
    layout, folder = cifar.detect_cifar10_layout(root)
    return train, held, f"{'pickles' if layout == 'pickles' else 'image folder'} {folder}"


def balanced_subset(split: CIFAR10Split, n: int) -> CIFAR10Split:
    """`n` images of `split`, the same number of each class (fixed seed), in their original order."""
    try:
        _, chosen = cifar.holdout_indices(split.labels, n, seed=0)
    except DataError as err:
        raise UsageError(f"--train-subset {n} is not possible for these {len(split):,} images: {err}") from err
    return CIFAR10Split(split.images[chosen], split.labels[chosen], split.classes, split.name,
                        f"a class-balanced {n:,} of {split.description}",
                        tuple(split.files[i] for i in chosen.tolist()) if split.files else ())


# --- training ----------------------------------------------------------------------------------------------

def milestone_epochs(cfg: Any) -> list[int]:
    """Epochs after which a step/multistep schedule lowers the lr (as `labkit.optim.make_scheduler` does)."""
    epochs = int(cfg.epochs)
    if cfg.schedule == "multistep":
        return [m for m in (cfg.milestones or [max(1, epochs // 2)]) if m < epochs]
    if cfg.schedule == "step":
        size = cfg.step_size or max(1, math.ceil(epochs / 3))
        return list(range(size, epochs, size))
    return []


def keep_epochs(cfg: LabConfig) -> tuple[int, ...]:
    """The epochs whose weights a run keeps: the last before the lr drop (else halfway), and the end."""
    return tuple(sorted({*(milestone_epochs(cfg) or [max(1, cfg.epochs // 2)]), cfg.epochs}))


def lr_drops(cfg: LabConfig) -> list[float]:
    """Where the lr drops fall on an epoch axis (5.5: between epochs 5 and 6); none for one-cycle."""
    return [m + 0.5 for m in milestone_epochs(cfg)]


# --- the optimizer re-created every epoch (the course report's bug), in numbers -----------------------------

CORRECT, RECREATED = "course (optimizer created once)", "optimizer re-created every epoch"


@dataclass
class OptimizerTrace:
    """Per epoch: the lr it trained at, and the norm of SGD's momentum buffers at its start and its end."""

    epoch: list[int]
    lr: list[float]
    momentum_start: list[float]
    momentum_end: list[float]


def momentum_norm(optimizer: torch.optim.Optimizer) -> float:
    """The L2 norm of all of the optimizer's momentum buffers together (0 when it has none yet)."""
    squares = [float(state["momentum_buffer"].double().pow(2).sum())
               for state in optimizer.state.values() if state.get("momentum_buffer") is not None]
    return sum(squares) ** 0.5


class OptimizerProbe(Callback):
    """Records an `OptimizerTrace`; with `recreate_lr`, also does at each epoch's end what creating a new SGD
    does, in place (a test checks the weights): its state emptied, its lr set, and its momentum set to
    `recreate_momentum`. The course report's loop re-created it as
    `optim.SGD(model.parameters(), lr=lr, weight_decay=5e-4)`: lr 0.01, momentum 0 (no Nesterov, no dampening)."""

    def __init__(self, recreate_lr: float | None = None, recreate_momentum: float = 0.0) -> None:
        self.recreate_lr = recreate_lr
        self.recreate_momentum = recreate_momentum
        self.trace = OptimizerTrace([], [], [], [])
        self._start = 0.0

    def on_fit_start(self, state: Any) -> None:
        self.trace = OptimizerTrace([], [], [], [])
        self._start = momentum_norm(state.optimizer)

    def on_epoch_end(self, state: Any) -> None:
        trace = self.trace
        trace.epoch.append(int(state.epoch))
        trace.lr.append(float(state.epoch_lr))
        trace.momentum_start.append(self._start)
        trace.momentum_end.append(momentum_norm(state.optimizer))
        if self.recreate_lr is not None:
            state.optimizer.state.clear()
            for group in state.optimizer.param_groups:
                group["lr"] = self.recreate_lr
                if "momentum" in group:  # SGD's settings as `optim.SGD(params, lr=lr, weight_decay=...)` sets them
                    group.update(momentum=self.recreate_momentum, dampening=0.0, nesterov=False)
        self._start = momentum_norm(state.optimizer)


@dataclass
class Recreation:
    """The two runs of `optimizer_recreation` and their optimizer traces, under the same names."""

    runs: dict[str, runner.Run]
    traces: dict[str, OptimizerTrace]

    def to_dict(self) -> dict[str, Any]:
        return {name: {"epoch": t.epoch, "lr": t.lr, "momentum_norm_at_epoch_start": t.momentum_start,
                       "momentum_norm_at_epoch_end": t.momentum_end,
                       **{k: self.runs[name].history[k] for k in LAB.curve_keys if k in self.runs[name].history}}
                for name, t in self.traces.items()}


def optimizer_recreation(cfg: Config, data: LabData | None = None, *,
                         correct: tuple[runner.Run, OptimizerProbe] | None = None, recreate_lr: float | None = None,
                         out: str | None = None, **options: Any) -> Recreation:
    """The course recipe trained correctly (optimizer created once) and as the course report's loop did (a new
    optimizer every epoch: `cfg.lr`, then `recreate_lr`, default lr x gamma, and momentum 0, as the report's
    `optim.SGD(model.parameters(), lr=lr, weight_decay=5e-4)`), same data and
    seed. `correct`: a course run already trained with an `OptimizerProbe`; `options` go to `runner.run` (no
    files by default); `out`: the re-created run's folder."""
    if cfg.schedule == "onecycle":
        raise UsageError("the optimizer re-creation re-creates the course recipe's optimizer; a one-cycle schedule "
                          "steps every batch and is not what the course report's loop did: use the course recipe.")
    options = {"write_files": False, "checkpoints": False, **options}
    if correct is None:
        probe = OptimizerProbe()
        correct = (runner.run(LAB, cfg, data=data, callbacks=[probe], **options), probe)
    run, probe = correct
    recreating = OptimizerProbe(cfg.lr * cfg.gamma if recreate_lr is None else recreate_lr)
    recreated = runner.run(LAB, run.config.replace(schedule="constant", **({"out": out} if out else {})),
                           data=data if data is not None else run.data, callbacks=[recreating], **options)
    return Recreation({CORRECT: run, RECREATED: recreated}, {CORRECT: probe.trace, RECREATED: recreating.trace})


def plot_recreation(result: Recreation, path: str | Path | None = None) -> Figure:
    """Per epoch, one colour per run: the lr, the momentum buffer at the epoch's start, and accuracy."""
    first = next(iter(result.runs.values()))
    label = first.data.split_label("test") if first.data is not None else "test"
    fig = new_figure((13, 3.8))
    axes = fig.subplots(1, 3)
    colors = dict(zip(result.runs, ("tab:blue", "tab:red")))
    for name, run in result.runs.items():
        trace, color = result.traces[name], colors.get(name)
        axes[0].plot(trace.epoch, trace.lr, marker="o", color=color, label=name)
        axes[1].plot(trace.epoch, trace.momentum_start, marker="o", color=color, label=name)
        axes[2].plot(run.history.epoch, run.history["test_accuracy"], marker="o", color=color,
                     label=f"{name}: {label}")
        axes[2].plot(run.history.epoch, run.history["train_accuracy"], ls="--", color=color,
                     label=f"{name}: train")
    axes[0].set(yscale="log", ylabel="lr", title="learning rate\nof each epoch")
    axes[1].set(ylabel="‖momentum buffer‖", title="momentum buffer (norm)\nat the start of each epoch")
    axes[2].set(ylabel="accuracy", title=f"accuracy: {label} (solid,\nmonitoring only), train (dashed)")
    for ax in axes:
        ax.set_xlabel("epoch")
        integer_epochs(ax)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    fig.suptitle(run_title(first, "optimizer created once vs re-created every epoch").replace(
        f"{first.config.recipe} recipe, ", ""))
    if path is not None:
        save_figure(fig, path)
    return fig


def split_key(run: runner.Run) -> str:
    """'holdout' when the evaluation split is held out of train, else 'test' (for the names of numbers)."""
    return "holdout" if run.data is not None and run.data.split_label("test").startswith("hold-out") else "test"


def reference_numbers(run: runner.Run) -> dict[str, Any]:
    """What a reference run records: final accuracies, the evaluation accuracy just before and after each lr
    drop, the training images and the wall time."""
    key, h = split_key(run), run.history
    numbers: dict[str, Any] = {"epochs": len(h), "train_accuracy": round(h.last("train_accuracy"), 4),
                               f"{key}_accuracy": round(run.final["test"]["accuracy"], 4),
                               "train_images": len(run.data.source.train) if run.data is not None else None}
    around = sorted({e for m in milestone_epochs(run.config) for e in (m, m + 1)})
    numbers.update({f"{key}_accuracy_epoch{e}": round(v, 4) for e, v in zip(h.epoch, h["test_accuracy"])
                    if e in around})
    numbers["seconds"] = round(run.seconds or h.total_seconds, 1)
    return numbers


# --- analysis ----------------------------------------------------------------------------------------------

def size_note(cfg: LabConfig) -> str:
    """'smoke size, synthetic data', 'laptop size, 5,000 real training images', 'full size'."""
    if cfg.size == "smoke":
        return "smoke size, synthetic data" if cfg.data is None else "smoke size"
    subset = getattr(cfg, "train_subset", None)
    return f"{cfg.size} size" + (f", {subset:,} real training images" if subset else "")


def run_title(run: runner.Run, what: str = "") -> str:
    """'course recipe, ResNet-8 — smoke size, synthetic data' (with `what: ` in front)."""
    cfg = run.config
    note = size_note(cfg)
    head = f"{cfg.recipe} recipe, ResNet-{cfg.depth}" + (f" — {note}" if note else "")
    return f"{what}: {head}" if what else head


def monitoring_labels(data: LabData | None) -> dict[str, str]:
    return {"test": f"{data.split_label('test') if data is not None else 'test'}, monitoring only"}


def plot_course_curves(run: runner.Run, path: str | Path | None = None) -> Figure:
    """Loss and accuracy per epoch, train and test (or hold-out), with the lr drop marked."""
    cfg, marks = run.config, lr_drops(run.config)
    fig = plot_history(run.history, list(LAB.curve_keys), mark_epochs=marks, title=run_title(run),
                       mark_label=f"lr {cfg.lr:g} → {cfg.lr * cfg.gamma:g}" if marks else "",
                       figure=new_figure((9, 3.4)), split_labels=monitoring_labels(run.data))
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_recipes(runs: Mapping[str, runner.Run], path: str | Path | None = None) -> Figure:
    """Test (or hold-out) accuracy, train accuracy and the lr at each epoch's start, one line per recipe."""
    first = next(iter(runs.values()))
    label = first.data.split_label("test") if first.data is not None else "test"
    fig = new_figure((13, 3.6))
    axes = fig.subplots(1, 3)
    histories = {name: run.history for name, run in runs.items()}
    plot_curves(histories, "test_accuracy", ax=axes[0], title=f"{label} accuracy (monitoring only)")
    plot_curves(histories, "train_accuracy", ax=axes[1], title="train accuracy (augmented, during the epoch)")
    for name, run in runs.items():
        axes[2].plot(run.history.epoch, run.history.lr, marker="o", label=name)
    axes[0].set_ylabel(f"{label} accuracy")
    axes[1].set_ylabel("train accuracy")
    axes[2].set(ylabel="lr", title="learning rate at the start of each epoch")
    integer_epochs(axes[2])
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.suptitle(run_title(first, "recipes").replace(f"{first.config.recipe} recipe, ", ""))
    if path is not None:
        save_figure(fig, path)
    return fig


def epoch_table(run: runner.Run) -> str:
    """The per-epoch values as a markdown table whose header names the evaluation split."""
    label = run.data.split_label("test") if run.data is not None else "test"
    head, _, rest = run.history.table(list(LAB.curve_keys)).partition("\n")
    return head.replace("test_", f"{label} ").replace("train_", "train ") + "\n" + rest


def predictions(model: nn.Module, loader: Any) -> torch.Tensor:
    """The predicted class of every image of `loader` (in order, on the CPU), in eval mode."""
    return predict(model, loader)[0].argmax(dim=1)


def per_class_accuracy(preds: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Fraction of each class's images predicted correctly (NaN for a class with no images)."""
    counts = confusion_matrix(preds, labels, num_classes).double()
    return counts.diag() / counts.sum(dim=1)


def most_confused(preds: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                  count: int = 5) -> list[list[Any]]:
    """The `count` most frequent mistakes as [true class, predicted class, images], most frequent first."""
    counts = confusion_matrix(preds, labels, len(classes)).clone()  # rows: true class, columns: predicted
    counts.fill_diagonal_(0)
    flat = counts.flatten()
    order = flat.argsort(descending=True, stable=True)[:count]
    return [[classes[int(i) // len(classes)], classes[int(i) % len(classes)], int(flat[i])]
            for i in order if flat[i] > 0]


def plot_per_class(accuracy: torch.Tensor, classes: Sequence[str], split: str = "test",
                   path: str | Path | None = None, title: str = "") -> Figure:
    """Horizontal bars: the accuracy of each class on `split`, with the mean as a dashed line."""
    fig = new_figure((6, 3.6 if title else 3.4))
    ax = fig.subplots()
    ax.barh(list(classes), accuracy.tolist(), color="tab:blue")
    mean = float(accuracy.nanmean())
    ax.axvline(mean, color="k", ls="--", lw=1, label=f"mean {mean:.3f}")
    ax.set(xlim=(0, 1), xlabel=f"{split} accuracy")
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    if title:
        ax.set_title(title, fontsize=9)
    if path is not None:
        save_figure(fig, path)
    return fig


def misclassified(preds: torch.Tensor, split: CIFAR10Split, count: int = 8) -> tuple[torch.Tensor, list[str]]:
    """The first `count` wrongly classified images and 'true → predicted' captions."""
    wrong = (preds != split.labels).nonzero().squeeze(1)[:count]
    titles = [f"{split.classes[int(split.labels[i])]} → {split.classes[int(preds[i])]}" for i in wrong]
    return split.images[wrong], titles
