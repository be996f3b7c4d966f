"""Lab 02: ResNet-20 on CIFAR-10, the course recipe (lr 0.1 then 0.01) and a faster 10-epoch recipe."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from labkit import config
from labkit.callbacks import Callback
from labkit.data import cifar
from labkit.data.cifar import CIFAR10Split
from labkit.device import describe_device, pick_device, seed_everything
from labkit.engine import fit
from labkit.history import History
from labkit.models.cifar_resnet import CifarResNet, cifar_resnet
from labkit.plots import new_figure, plot_curves, plot_history, save_figure


@dataclass(frozen=True)
class Recipe:
    """How to train: SGD with momentum and weight decay, and a learning-rate schedule.

    schedule "step": `lr` until the halfway epoch, then `lr * drop_factor` (the course:
    0.1 for epochs 1-5, 0.01 for 6-10). schedule "onecycle": per-step warm-up from
    `lr / 10` to `lr` over the first `warmup_fraction` of the steps, then cosine
    annealing to `lr / 1000`.
    """

    name: str
    epochs: int = 10
    lr: float = 0.1
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    label_smoothing: float = 0.0
    schedule: str = "step"
    drop_factor: float = 0.1
    warmup_fraction: float = 0.2


RECIPES: dict[str, Recipe] = {
    # the course script: SGD momentum 0.9, wd 5e-4, batch 128, lr 0.1 x 5 epochs then 0.01 x 5
    "course": Recipe("course"),
    # same budget (10 epochs, batch 128): warm-up + cosine one-cycle, nesterov, label smoothing
    "fast": Recipe("fast", lr=0.2, nesterov=True, label_smoothing=0.1, schedule="onecycle"),
}


def get_recipe(recipe: str | Recipe) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}: use one of {', '.join(RECIPES)}.")
    return RECIPES[recipe]


def drop_epoch(epochs: int) -> int:
    """The last epoch at the initial lr in the step schedule: halfway (epoch 5 of 10)."""
    return max(1, epochs // 2)


def make_optimizer(model: nn.Module, recipe: Recipe, lr: float | None = None) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=recipe.lr if lr is None else lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, epochs: int,
                   steps_per_epoch: int) -> tuple[torch.optim.lr_scheduler.LRScheduler, str]:
    """(scheduler, interval for fit()): MultiStepLR per epoch, or OneCycleLR per step."""
    if recipe.schedule == "step":
        sched = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[drop_epoch(epochs)],
                                                     gamma=recipe.drop_factor)
        return sched, "epoch"
    if recipe.schedule == "onecycle":
        max_lr = optimizer.param_groups[0]["lr"]
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=epochs * steps_per_epoch, pct_start=recipe.warmup_fraction,
            anneal_strategy="cos", div_factor=10.0, final_div_factor=100.0, cycle_momentum=False)
        return sched, "step"
    raise ValueError(f"Unknown schedule {recipe.schedule!r}: use 'step' or 'onecycle'.")


# --- sizes and data ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sizes:
    """How big a run is: the course's at full size, seconds on a CPU at smoke size."""

    epochs: int
    depth: int
    batch_size: int | None  # None: the recipe's
    n_train: int | None     # None: the whole split
    n_test: int | None
    synthetic: bool


def sizes(smoke: bool | None = None) -> Sizes:
    smoke = config.is_smoke() if smoke is None else smoke
    if smoke:
        return Sizes(epochs=4, depth=8, batch_size=32, n_train=192, n_test=128, synthetic=True)
    return Sizes(epochs=10, depth=20, batch_size=None, n_train=None, n_test=None, synthetic=False)


def load_data(root: str | Path | None = None, *, smoke: bool | None = None,
              download: bool = False) -> tuple[CIFAR10Split, CIFAR10Split]:
    """(train, test) resident as uint8 tensors. Smoke size writes (once) and reads synthetic data
    under `<root or LABKIT_DATA>/synthetic`, never touching a real copy."""
    size = sizes(smoke)
    if size.synthetic:
        base = Path(root if root is not None else config.data_root()) / "synthetic"
        if not all((cifar.cifar10_folder(base) / name).is_file() for name in cifar.required_files()):
            cifar.write_synthetic_cifar10(base, size.n_train or 192, size.n_test or 128, seed=0)
        return cifar.load_cifar10_splits(base)
    return cifar.load_cifar10_splits(root, download=download)


# --- training ----------------------------------------------------------------------------------------------

@dataclass
class CifarRun:
    """A trained model with its History and the settings that made it."""

    model: CifarResNet
    history: History
    recipe: Recipe
    epochs: int
    lr: float

    @property
    def lr_drop(self) -> float | None:
        """Where the step schedule's lr drop falls on an epoch axis (between epochs 5 and 6), or None."""
        if self.recipe.schedule != "step" or self.epochs <= drop_epoch(self.epochs):
            return None
        return drop_epoch(self.epochs) + 0.5


def train_cifar10(
    train: CIFAR10Split,
    test: CIFAR10Split,
    recipe: str | Recipe = "course",
    *,
    epochs: int | None = None,
    lr: float | None = None,
    depth: int | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    compile: bool = False,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    tensorboard: str | Path | None = None,
    progress: bool | None = None,
) -> CifarRun:
    """Train a CIFAR ResNet with a recipe; train and test accuracy recorded every epoch.

    On CUDA the engine uses channels_last and autocast (bf16 where supported, else fp16
    with a GradScaler); `compile=True` also compiles the model there. On CPU none of it.
    """
    recipe = get_recipe(recipe)
    size = sizes()
    epochs = epochs if epochs is not None else (recipe.epochs if not config.is_smoke() else size.epochs)
    lr = recipe.lr if lr is None else lr
    batch_size = batch_size or size.batch_size or recipe.batch_size
    seed_everything(seed)
    device = pick_device(device)
    model = cifar_resnet(depth or size.depth)
    train_loader, test_loader = cifar.cifar10_loaders(train, test, batch_size=batch_size, device=device,
                                                      seed=seed)
    optimizer = make_optimizer(model, recipe, lr)
    scheduler, interval = make_scheduler(optimizer, recipe, epochs, len(train_loader))
    if compile and device.type == "cuda":
        model.compile()  # in place: state_dict keys (and checkpoints) stay those of the plain model
    policy = None
    if checkpoint_dir is not None:
        from labkit.checkpoint import CheckpointPolicy

        # keep the weights at the lr drop and at the end, to compare them later
        policy = CheckpointPolicy(checkpoint_dir, at_epochs=(drop_epoch(epochs), epochs), monitor="test_accuracy")
    history = fit(
        model, train_loader, epochs=epochs, optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
        eval_data={"test": test_loader}, metrics=("accuracy",),
        scheduler=scheduler, scheduler_interval=interval, device=device,
        amp=True, channels_last=True, callbacks=callbacks, checkpoints=policy, tensorboard=tensorboard,
        progress=progress, monitor="test_loss",
        config={"lab": "cifar10", **asdict(replace(recipe, epochs=epochs, lr=lr, batch_size=batch_size)),
                "depth": model.depth, "seed": seed},
    )
    return CifarRun(model, history, recipe, epochs, lr)


# --- analysis ----------------------------------------------------------------------------------------------

@torch.no_grad()
def predict(model: nn.Module, split: CIFAR10Split, batch_size: int = 1000,
            device: str | torch.device | None = None) -> torch.Tensor:
    """Predicted class of every image of `split` (on the CPU), in eval mode."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    _, loader = cifar.cifar10_loaders(split, split, batch_size=batch_size, device=device)
    was_training = model.training
    model.eval()
    preds = [model(images).argmax(dim=1).cpu() for images, _ in loader]
    model.train(was_training)
    return torch.cat(preds)


def per_class_accuracy(preds: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Fraction of each class's images predicted correctly (NaN for a class with no images)."""
    labels = labels.cpu()
    correct = torch.bincount(labels[preds.cpu() == labels], minlength=num_classes).double()
    total = torch.bincount(labels, minlength=num_classes).double()
    return correct / total


def plot_course_curves(run: CifarRun, path: str | Path | None = None) -> Figure:
    """Loss and accuracy per epoch, train and test, with the lr drop marked."""
    marks = [run.lr_drop] if run.lr_drop is not None else []
    dropped = run.lr * run.recipe.drop_factor
    fig = plot_history(run.history, ["train_loss", "test_loss", "train_accuracy", "test_accuracy"],
                       mark_epochs=marks, mark_label=f"lr {run.lr:g} → {dropped:g}",
                       title=f"{run.recipe.name} recipe, ResNet-{run.model.depth}", figure=new_figure((9, 3.4)))
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_recipes(runs: dict[str, CifarRun], path: str | Path | None = None) -> Figure:
    """Test accuracy, train accuracy and learning rate (at each epoch's start) per epoch, one line per recipe."""
    fig = new_figure((13, 3.6))
    axes = fig.subplots(1, 3)
    histories = {name: run.history for name, run in runs.items()}
    plot_curves(histories, "test_accuracy", ax=axes[0], title="test accuracy")
    plot_curves(histories, "train_accuracy", ax=axes[1], title="train accuracy (augmented, during the epoch)")
    for name, run in runs.items():
        axes[2].plot(run.history.epoch, run.history.lr, marker="o", label=name)
    axes[2].set(xlabel="epoch", ylabel="lr", title="learning rate at the start of each epoch")
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_images(images: torch.Tensor, titles: Sequence[str], ncols: int = 8, path: str | Path | None = None) -> Figure:
    """A grid of uint8 (N, 3, H, W) images with a title under each."""
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig = new_figure((1.4 * ncols, 1.6 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, title in zip(axes, images, titles):
        ax.imshow(image.permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=7)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_per_class(accuracy: torch.Tensor, classes: Sequence[str], path: str | Path | None = None) -> Figure:
    """Horizontal bars: test accuracy of each class, with the mean as a dashed line."""
    fig = new_figure((6, 3.4))
    ax = fig.subplots()
    values = accuracy.tolist()
    ax.barh(list(classes), values, color="tab:blue")
    mean = float(accuracy.nanmean())
    ax.axvline(mean, color="k", ls="--", lw=1, label=f"mean {mean:.3f}")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    if path is not None:
        save_figure(fig, path)
    return fig


def misclassified(preds: torch.Tensor, split: CIFAR10Split, count: int = 8) -> tuple[torch.Tensor, list[str]]:
    """The first `count` wrongly classified images and 'true → predicted' captions."""
    wrong = (preds != split.labels).nonzero().squeeze(1)[:count]
    titles = [f"{split.classes[int(split.labels[i])]} → {split.classes[int(preds[i])]}" for i in wrong]
    return split.images[wrong], titles


def summary(run: CifarRun) -> dict[str, float]:
    """The figures a run is judged by: final and best test accuracy, final train accuracy, seconds."""
    h = run.history
    return {"test_accuracy": h.last("test_accuracy"), "best_test_accuracy": h.best("test_accuracy")[1],
            "train_accuracy": h.last("train_accuracy"), "seconds": h.total_seconds}


# --- command line ------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="course",
                        help="course: lr 0.1 then 0.01 (step at half); fast: one-cycle, nesterov, label smoothing")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 10; smoke 4)")
    parser.add_argument("--lr", type=float, default=None, help="initial (course) or peak (fast) learning rate")
    parser.add_argument("--depth", type=int, default=None, help="ResNet depth 6n+2: 20, 32, 44, 56 (default 20)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 128")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder holding cifar-10-batches-py/ (default $LABKIT_DATA)")
    parser.add_argument("--download", action="store_true", help="download CIFAR-10 (163 MB) if missing")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/cifar10-<recipe>)")
    parser.add_argument("--smoke", action="store_true", help="tiny run on synthetic data (also LABKIT_SMOKE=1)")


def main(args: argparse.Namespace) -> dict[str, Any] | int:
    if args.smoke:
        os.environ["LABKIT_SMOKE"] = "1"
    out = args.out or config.runs_dir() / f"cifar10-{args.recipe}"
    try:
        train, test = load_data(args.data, download=args.download)
    except cifar.CIFAR10Error as err:
        print(err, file=sys.stderr)
        return 1
    print(f"CIFAR-10: {len(train)} train / {len(test)} test images · {describe_device(args.device)}")
    run = train_cifar10(train, test, args.recipe, epochs=args.epochs, lr=args.lr, depth=args.depth,
                        batch_size=args.batch_size, device=args.device, seed=args.seed, compile=args.compile,
                        checkpoint_dir=out / "checkpoints", tensorboard=out / "tensorboard")
    plot_course_curves(run, out / "curves.png")
    metrics: dict[str, Any] = {"recipe": args.recipe, "epochs": run.epochs, "lr": run.lr,
                               "depth": run.model.depth, **summary(run)}
    (out / "metrics.json").write_text(json.dumps({**metrics, "history": run.history.to_dict()}, indent=2))
    print(run.history.table(["train_loss", "train_accuracy", "test_loss", "test_accuracy"]))
    print(f"test accuracy {metrics['test_accuracy']:.4f} after {run.epochs} epochs "
          f"({metrics['seconds']:.0f} s); curves, checkpoints and TensorBoard logs under {out}/")
    return metrics


def smoke(out_dir: Path) -> dict[str, float]:
    """Both recipes at smoke size on synthetic data; writes the curves and the comparison."""
    out_dir = Path(out_dir)
    train, test = load_data(smoke=True)
    runs = {name: train_cifar10(train, test, name, device="cpu") for name in RECIPES}
    plot_course_curves(runs["course"], out_dir / "course_curves.png")
    plot_recipes(runs, out_dir / "recipes.png")
    return {f"{name}_test_accuracy": run.history.last("test_accuracy") for name, run in runs.items()}
