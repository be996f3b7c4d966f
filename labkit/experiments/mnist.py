"""Lab 03: MNIST CNN — MyConvNet and a fast small CNN, optimizer and schedule comparisons, early stopping.

Everything here trains through `labkit.engine.fit` on tensor-resident loaders
(`labkit.data.tensor_loader.TensorLoader`): the whole split is one uint8 tensor,
batches are index gathers, random shifts are batched (`RandomShift`), so an epoch
of MNIST costs seconds on a laptop CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from labkit import config
from labkit.callbacks import Callback, EarlyStopping
from labkit.checkpoint import CheckpointPolicy, load_checkpoint
from labkit.data import mnist as mnist_data
from labkit.data.augment import Compose, Normalize, RandomShift
from labkit.data.tensor_loader import TensorLoader, single_thread_on_cpu
from labkit.device import pick_device, seed_everything
from labkit.engine import evaluate, fit
from labkit.history import History
from labkit.models.mnist import build_model
from labkit.plots import new_figure, plot_curves, plot_history, save_figure

OPTIMIZERS = ("adam", "adamw", "nadam", "sgd")
SCHEDULES = ("constant", "step", "warmup", "onecycle")


@dataclass(frozen=True)
class Recipe:
    """Everything that defines one training run; stored as the checkpoint's config."""

    model: str = "fast"            # 'fast' (FastConvNet) or 'myconvnet'
    width: int = 16                # FastConvNet channels of the first block
    epochs: int = 8
    batch_size: int = 256
    optimizer: str = "adamw"       # adam | adamw | nadam | sgd
    lr: float = 3e-3               # peak learning rate
    weight_decay: float = 5e-4
    momentum: float = 0.9          # SGD only
    schedule: str = "onecycle"     # constant | step | warmup | onecycle
    step_size: int = 2             # StepLR: epochs between decays
    gamma: float = 0.9             # StepLR: decay factor
    warmup_epochs: float = 1.0     # warmup: linear ramp length
    label_smoothing: float = 0.1
    max_shift: int = 2             # random shift augmentation, pixels (0: none)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}.")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}.")

    def with_(self, **changes: Any) -> Recipe:
        """A copy with some fields changed (unknown names are an error)."""
        return replace(self, **changes)


def default_recipe(smoke: bool | None = None) -> Recipe:
    """The lab's default: FastConvNet, AdamW with a one-cycle schedule, label smoothing, random shifts.

    At smoke size (tiny synthetic data) the same recipe runs 3 epochs with batches of 64.
    """
    smoke = config.is_smoke() if smoke is None else smoke
    return Recipe(epochs=3, batch_size=64, lr=1e-2) if smoke else Recipe()


def sizes(smoke: bool | None = None) -> dict[str, Any]:
    """Epochs of the notebook's runs: seconds on CPU at smoke size, the real thing otherwise."""
    smoke = config.is_smoke() if smoke is None else smoke
    if smoke:
        return {"panel_epochs": 3, "compare_epochs": 2, "early_stopping_epochs": 8, "patience": 2,
                "mistake_epochs": 2, "myconvnet_epochs": 1, "myconvnet_images": 480, "myconvnet_batch": 32,
                "myconvnet_lr": 3e-3}
    return {"panel_epochs": Recipe().epochs, "compare_epochs": 6, "early_stopping_epochs": 20, "patience": 3,
            "mistake_epochs": 3, "myconvnet_epochs": 2, "myconvnet_images": None,
            "myconvnet_batch": Recipe().batch_size, "myconvnet_lr": Recipe().lr}


#: the course's comparison runs: same model, data, epochs and seed; only optimizer and schedule differ
COMPARISONS: dict[str, dict[str, Any]] = {
    "Adam, constant": {"optimizer": "adam", "schedule": "constant", "lr": 1e-3},
    "Adam + StepLR": {"optimizer": "adam", "schedule": "step", "lr": 1e-3},
    "Adam + warm-up": {"optimizer": "adam", "schedule": "warmup", "lr": 1e-3},
    "NAdam + StepLR": {"optimizer": "nadam", "schedule": "step", "lr": 1e-3},
    "SGD momentum": {"optimizer": "sgd", "schedule": "constant", "lr": 0.05},
}


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------

def runs_folder() -> Path:
    """Where the notebook's checkpoints go: `runs/mnist-lab` ($LABKIT_RUNS), a temporary folder at smoke
    size (test runs keep their outputs out of the checkout)."""
    if config.is_smoke():
        return Path(tempfile.mkdtemp(prefix="labkit-mnist-smoke-"))
    return config.runs_dir() / "mnist-lab"


def synthetic_root() -> Path:
    """Where smoke runs keep their tiny synthetic MNIST (under LABKIT_DATA)."""
    return config.data_root() / "synthetic-mnist"


def load_data(root: str | os.PathLike | None = None, *, smoke: bool | None = None, download: bool = False,
              valid_fraction: float = 1 / 6, seed: int = 0) -> mnist_data.MNISTData:
    """MNIST split into train/valid/test: tiny synthetic MNIST at smoke size (written once), else the real one.

    The real data is read from `root` (torchvision's layout or the course's .pth files), by default
    from LABKIT_DATA or the shared read-only copy (see `labkit.data.mnist.default_root`).
    """
    smoke = config.is_smoke() if smoke is None else smoke
    if smoke and root is None:
        root = synthetic_root()
        if not mnist_data.idx_available(root):
            mnist_data.write_synthetic_mnist(root, n_train=1200, n_test=300, seed=seed)
    return mnist_data.load_mnist(root, download=download, valid_fraction=valid_fraction, seed=seed)


def eval_transform() -> Compose:
    """uint8 -> float in [0, 1] -> (x - 0.1307) / 0.3081, as whole batches."""
    return Compose([Normalize((mnist_data.MEAN,), (mnist_data.STD,))])  # uint8 in, normalised float out


def train_transform(max_shift: int) -> Compose:
    """Random shifts of up to `max_shift` pixels (on uint8), then the eval transform."""
    shift = [RandomShift(max_shift)] if max_shift > 0 else []
    return Compose([*shift, Normalize((mnist_data.MEAN,), (mnist_data.STD,))])


def make_loaders(data: mnist_data.MNISTData, recipe: Recipe, device: torch.device | str | None = None,
                 eval_batch_size: int = 2000, splits: Sequence[str] = ("train", "val", "test"),
                 ) -> dict[str, TensorLoader]:
    """Tensor-resident loaders for 'train' (shuffled, shifted), 'val' and 'test' on `device`."""
    device = pick_device(device)
    loaders = {}
    for split in splits:
        images, labels = data.split(split)
        if len(labels) == 0:
            continue
        images = images.unsqueeze(1)  # (N, 1, 28, 28) uint8: 4x smaller than float while resident
        if split == "train":
            batch = min(recipe.batch_size, len(labels))
            loaders[split] = TensorLoader(images, labels, batch_size=batch, shuffle=True, drop_last=True,
                                          device=device, transform=train_transform(recipe.max_shift),
                                          seed=recipe.seed)
        else:
            loaders[split] = TensorLoader(images, labels, batch_size=eval_batch_size, device=device,
                                          transform=eval_transform())
    return loaders


# ---------------------------------------------------------------------------------------------
# optimizers and schedules
# ---------------------------------------------------------------------------------------------

def make_optimizer(recipe: Recipe, params: Any) -> torch.optim.Optimizer:
    """Adam / AdamW / NAdam / SGD with Nesterov momentum, at the recipe's lr and weight decay."""
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "nadam":
        return torch.optim.NAdam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, nesterov=True,
                           weight_decay=recipe.weight_decay)


def make_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> tuple[Any, str]:
    """(scheduler or None, 'epoch' | 'step') for the recipe's schedule.

    * constant: no scheduler;
    * step: StepLR(step_size epochs, gamma), stepped per epoch;
    * warmup: lr rises linearly from lr/steps to lr over `warmup_epochs`, then stays;
    * onecycle: OneCycleLR — a quarter of the run warming up from lr/25 to `lr`, then a cosine anneal
      to ~0 (Adam's beta1 cycles 0.95 -> 0.85 -> 0.95 alongside).
    """
    if recipe.schedule == "constant":
        return None, "epoch"
    if recipe.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.step_size, gamma=recipe.gamma), "epoch"
    if recipe.schedule == "warmup":
        warm = max(1, round(recipe.warmup_epochs * steps_per_epoch))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warm)), "step"
    total = recipe.epochs * steps_per_epoch
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total,
                                               pct_start=0.25), "step"


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------

@dataclass
class Run:
    """A trained model, its History and the recipe that made it."""

    model: nn.Module
    history: History
    recipe: Recipe
    checkpoint_dir: Path | None = None

    @property
    def best_checkpoint(self) -> Path | None:
        return None if self.checkpoint_dir is None else self.checkpoint_dir / "best.pt"


def recipe_model(recipe: Recipe) -> nn.Module:
    """The recipe's model, freshly initialised."""
    return build_model(recipe.model, **({"width": recipe.width} if recipe.model == "fast" else {}))


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to `device`; on CPU use channels_last weights (oneDNN's fast path: ~1.5-2x for these CNNs).

    The 1-channel input needs no conversion: (N, 1, H, W) is laid out the same either way.
    """
    model = model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model


def train(recipe: Recipe, data: mnist_data.MNISTData, *, model: nn.Module | Callable[[], nn.Module] | None = None,
          device: str | torch.device | None = None, eval_splits: Sequence[str] = ("val", "test"),
          callbacks: Sequence[Callback] = (), early_stopping: EarlyStopping | None = None,
          checkpoint_dir: str | os.PathLike | None = None, tensorboard: str | os.PathLike | None = None,
          loss_fn: nn.Module | None = None, progress: bool | None = None) -> Run:
    """Train one recipe with `fit()`; evaluates `eval_splits` each epoch, keeps `best.pt` by val accuracy.

    `model` overrides the recipe's model: a module, or a class / function that builds one (built after
    seeding, so its initial weights depend on `recipe.seed` only). `loss_fn` overrides the recipe's
    label-smoothed cross-entropy (the mistakes section uses both).
    """
    seed_everything(recipe.seed)
    device = pick_device(device)
    if model is None:
        model = recipe_model(recipe)
    elif not isinstance(model, nn.Module):
        model = model()
    model = prepare_model(model, device)
    loaders = make_loaders(data, recipe, device)
    optimizer = make_optimizer(recipe, model.parameters())
    scheduler, interval = make_scheduler(recipe, optimizer, len(loaders["train"]))
    evals = {split: loaders[split] for split in eval_splits if split in loaders}
    monitor = "val_accuracy" if "val" in evals else None
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    policy = (CheckpointPolicy(checkpoint_dir, every=1, best=True, monitor="val_accuracy")
              if checkpoint_dir is not None and monitor else None)
    # Smoke runs are tiny: a second thread gains nothing there, while on a busy CI machine every
    # parallel op would wait for a descheduled helper thread (measured 10-30x slower per epoch).
    threads = single_thread_on_cpu(device) if config.is_smoke() else contextlib.nullcontext()
    with threads:
        history = fit(
            model, loaders["train"], epochs=recipe.epochs, optimizer=optimizer,
            loss_fn=loss_fn or nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
            eval_data=evals, metrics=("accuracy",), scheduler=scheduler, scheduler_interval=interval,
            device=device, early_stopping=early_stopping, checkpoints=policy, callbacks=callbacks,
            tensorboard=tensorboard, monitor=monitor, progress=progress,
            config={"lab": "mnist", **asdict(recipe)},
        )
    return Run(model, history, recipe, checkpoint_dir)


def compare(data: mnist_data.MNISTData, base: Recipe | None = None,
            runs: Mapping[str, Mapping[str, Any]] = COMPARISONS, *, device: str | torch.device | None = None,
            progress: bool | None = None, on_run_end: Callable[[str, Run], None] | None = None) -> dict[str, History]:
    """Train one model per entry of `runs` (recipe overrides); same model, data, epochs and seed for all."""
    base = base or default_recipe()
    histories = {}
    for name, changes in runs.items():
        run = train(base.with_(**changes), data, device=device, progress=progress)
        histories[name] = run.history
        if on_run_end is not None:
            on_run_end(name, run)
    return histories


def comparison_table(histories: Mapping[str, History]) -> str:
    """Markdown: final train loss, best val accuracy (epoch), test accuracy at that epoch, seconds."""
    lines = ["| run | final train loss | best val acc (epoch) | test acc at that epoch | seconds |",
             "|---|---:|---:|---:|---:|"]
    for name, h in histories.items():
        epoch, val = h.best("val_accuracy")
        test = h["test_accuracy"][h.epoch.index(epoch)] if "test_accuracy" in h else math.nan
        lines.append(f"| {name} | {h.last('train_loss'):.4f} | {100 * val:.2f} % ({epoch}) | "
                     f"{100 * test:.2f} % | {h.total_seconds:.1f} |")
    return "\n".join(lines)


def reload_best(run: Run, device: str | torch.device | None = None) -> nn.Module:
    """A fresh model of the run's recipe with the weights of its best checkpoint (by val accuracy)."""
    if run.best_checkpoint is None or not run.best_checkpoint.is_file():
        raise FileNotFoundError("This run kept no best checkpoint: train it with checkpoint_dir=... .")
    recipe = run.recipe
    model = recipe_model(recipe)
    load_checkpoint(run.best_checkpoint, model)
    return prepare_model(model, pick_device(device))


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def test_accuracy(model: nn.Module, data: mnist_data.MNISTData, split: str = "test",
                  device: str | torch.device | None = None) -> float:
    """Argmax accuracy of `model` on one split."""
    loader = make_loaders(data, default_recipe(), device or _device_of(model), splits=(split,))[split]
    return evaluate(model, loader, loss_fn=nn.CrossEntropyLoss(), metrics=("accuracy",))["accuracy"]


# ---------------------------------------------------------------------------------------------
# predictions, the two classic mistakes
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def predict_logits(model: nn.Module, data: mnist_data.MNISTData, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, 10), labels (N,)) of one split, on the CPU, in the split's order."""
    loader = make_loaders(data, default_recipe(), _device_of(model), splits=(split,))[split]
    was_training = model.training
    model.eval()
    outputs, labels = [], []
    for x, y in loader:
        outputs.append(model(x).float().cpu())
        labels.append(y.cpu())
    model.train(was_training)
    return torch.cat(outputs), torch.cat(labels)


def argmax_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The right way: the predicted class is the one with the largest logit."""
    return (logits.argmax(dim=1) == labels).float().mean().item()


def sampled_accuracy(logits: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """The classic mistake: draw a label from softmax(logits) instead of taking the argmax.

    It scores a random guess, so it is lower than the real accuracy and changes from run to run.
    """
    gen = torch.Generator().manual_seed(seed)
    drawn = torch.multinomial(torch.softmax(logits.float(), dim=1), 1, generator=gen).squeeze(1)
    return (drawn == labels).float().mean().item()


class SoftmaxOutput(nn.Module):
    """The classic mistake: a model whose forward ends in softmax, fed to nn.CrossEntropyLoss.

    CrossEntropyLoss applies log-softmax itself, so this trains on softmax(softmax(z)): the loss
    can never go below log(1 + 9/e) ≈ 1.46 and its gradients shrink, so learning slows.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def softmax_mistake(data: mnist_data.MNISTData, recipe: Recipe, *, device: str | torch.device | None = None,
                    progress: bool | None = None) -> dict[str, History]:
    """Train the same model twice (same seed): logits into CrossEntropyLoss, and softmax into it.

    Both use plain cross-entropy (no label smoothing) so the only difference is the softmax.
    """
    recipe = recipe.with_(label_smoothing=0.0)
    plain = nn.CrossEntropyLoss()
    right = train(recipe, data, device=device, loss_fn=plain, progress=progress)
    wrong = train(recipe, data, model=lambda: SoftmaxOutput(recipe_model(recipe)), device=device, loss_fn=plain,
                  progress=progress)
    return {"logits -> CrossEntropyLoss (right)": right.history,
            "softmax -> CrossEntropyLoss (mistake)": wrong.history}


def mistakes_table(histories: Mapping[str, History]) -> str:
    lines = ["| run | final train loss | val acc | test acc |", "|---|---:|---:|---:|"]
    for name, h in histories.items():
        lines.append(f"| {name} | {h.last('train_loss'):.4f} | {100 * h.last('val_accuracy'):.2f} % | "
                     f"{100 * h.last('test_accuracy'):.2f} % |")
    return "\n".join(lines)


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """counts[true, predicted] as an int64 (num_classes, num_classes) tensor."""
    index = labels.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------

def image_grid(images: torch.Tensor, titles: Sequence[str] = (), ncols: int = 10, title: str = "",
               path: str | os.PathLike | None = None, cell: float = 1.0) -> Figure:
    """Grey-scale images (N, 28, 28) in a grid, each with an optional title."""
    n = len(images)
    nrows = max(1, math.ceil(n / ncols))
    fig = new_figure((cell * ncols, cell * 1.15 * nrows + (0.4 if title else 0)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].squeeze().cpu().numpy(), cmap="gray_r", vmin=0, vmax=255 if images.dtype == torch.uint8 else None)
            if i < len(titles):
                ax.set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title)
    if path is not None:
        save_figure(fig, path)
    return fig


def sample_grid(data: mnist_data.MNISTData, per_class: int = 6, path: str | os.PathLike | None = None) -> Figure:
    """The first `per_class` training images of each digit, one column per digit."""
    images, labels = data.train_images, data.train_labels
    picked = []
    for row in range(per_class):
        for digit in range(10):
            where = (labels == digit).nonzero().flatten()
            picked.append(images[where[row]] if row < len(where) else torch.zeros_like(images[0]))
    titles = [str(d) for d in range(10)]
    return image_grid(torch.stack(picked), titles, ncols=10, title="training images, one column per digit",
                      path=path)


def class_counts(data: mnist_data.MNISTData) -> dict[str, torch.Tensor]:
    """Images per digit in each split."""
    return {split: torch.bincount(data.split(split)[1], minlength=10) for split in ("train", "val", "test")}


def plot_class_counts(data: mnist_data.MNISTData, path: str | os.PathLike | None = None) -> Figure:
    """Grouped bars: images per digit in train, val and test."""
    fig = new_figure((8, 3))
    ax = fig.subplots()
    counts = class_counts(data)
    width = 0.27
    for i, (split, values) in enumerate(counts.items()):
        ax.bar([d + (i - 1) * width for d in range(10)], values.tolist(), width, label=f"{split} ({int(values.sum()):,})")
    ax.set_xticks(range(10))
    ax.set_xlabel("digit")
    ax.set_ylabel("images")
    ax.set_title("class counts")
    ax.legend(fontsize=8)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_confusion_matrix(matrix: torch.Tensor, title: str = "confusion matrix (test)",
                          path: str | os.PathLike | None = None) -> Figure:
    """Counts with the diagonal dimmed, so the mistakes stand out."""
    fig = new_figure((5.2, 4.6))
    ax = fig.subplots()
    off = matrix.clone().float()
    off.fill_diagonal_(float("nan"))
    image = ax.imshow(off.numpy(), cmap="Reds")
    fig.colorbar(image, ax=ax, shrink=0.8, label="mistakes")
    for t in range(matrix.shape[0]):
        for p in range(matrix.shape[1]):
            value = int(matrix[t, p])
            if value:
                ax.text(p, t, str(value), ha="center", va="center", fontsize=7,
                        color="grey" if t == p else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if path is not None:
        save_figure(fig, path)
    return fig


def misclassified(logits: torch.Tensor, labels: torch.Tensor, limit: int = 30) -> torch.Tensor:
    """Indices of wrong predictions, the most confident mistakes first."""
    probs = torch.softmax(logits, dim=1)
    predicted = probs.argmax(dim=1)
    wrong = (predicted != labels).nonzero().flatten()
    confidence = probs[wrong, predicted[wrong]]
    return wrong[confidence.argsort(descending=True)][:limit]


def plot_misclassified(data: mnist_data.MNISTData, logits: torch.Tensor, labels: torch.Tensor, limit: int = 30,
                       split: str = "test", path: str | os.PathLike | None = None) -> Figure:
    """The most confident mistakes, titled 'true→predicted (confidence)'."""
    index = misclassified(logits, labels, limit)
    images = data.split(split)[0][index]
    probs = torch.softmax(logits[index], dim=1)
    titles = [f"{int(labels[i])}→{int(p.argmax())} ({p.max():.0%})" for i, p in zip(index, probs)]
    if len(index) == 0:
        images = torch.zeros(1, 28, 28, dtype=torch.uint8)
        titles = ["no mistakes"]
    return image_grid(images, titles, ncols=10, title=f"misclassified {split} digits: true→predicted", path=path)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Recipe()
    parser.add_argument("--epochs", type=int, default=None, help=f"epochs (default {d.epochs}; smoke 3)")
    parser.add_argument("--lr", type=float, default=None, help=f"(peak) learning rate (default {d.lr:g})")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help=f"default {d.optimizer}")
    parser.add_argument("--schedule", choices=SCHEDULES, default=None, help=f"default {d.schedule}")
    parser.add_argument("--model", choices=("fast", "myconvnet"), default=None, help="default fast (FastConvNet)")
    parser.add_argument("--batch-size", type=int, default=None, help=f"default {d.batch_size}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patience", type=int, default=0,
                        help="early stopping on val accuracy after this many epochs without improvement (0: off)")
    parser.add_argument("--data", type=Path, default=None,
                        help="MNIST root (torchvision's MNIST/raw layout) or a folder with the course's .pth "
                             "files (default: LABKIT_DATA, else ../shared/datasets)")
    parser.add_argument("--download", action="store_true", help="download MNIST into --data if missing")
    parser.add_argument("--compare", action="store_true",
                        help="run the optimizer/schedule comparison (Adam, StepLR, warm-up, NAdam, SGD) instead")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/mnist)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic data, seconds on CPU (also LABKIT_SMOKE=1)")


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    recipe = default_recipe()
    changes = {f.name: getattr(args, f.name) for f in fields(Recipe)
               if getattr(args, f.name, None) is not None}
    return recipe.with_(**changes)


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        os.environ["LABKIT_SMOKE"] = "1"
    recipe = recipe_from_args(args)
    out = Path(args.out) if args.out else config.runs_dir() / "mnist"
    try:
        data = load_data(args.data, download=args.download, seed=recipe.seed)
    except mnist_data.MNISTNotFoundError as err:
        raise SystemExit(str(err)) from None
    print(f"data: {data}")
    if args.compare:
        histories = compare(data, recipe, device=args.device)
        table = comparison_table(histories)
        print(table)
        plot_curves(histories, "val_accuracy", path=out / "compare_val_accuracy.png")
        plot_curves(histories, "train_loss", path=out / "compare_train_loss.png")
        (out / "compare.md").write_text(table + "\n")
        return {name: h.best("val_accuracy")[1] for name, h in histories.items()}
    stopper = EarlyStopping("val_accuracy", patience=args.patience) if args.patience else None
    started = time.perf_counter()
    run = train(recipe, data, device=args.device, early_stopping=stopper, checkpoint_dir=out / "checkpoints")
    seconds = time.perf_counter() - started
    best = reload_best(run, args.device)
    best_epoch, best_val = run.history.best("val_accuracy")
    accuracy = test_accuracy(best, data)
    plot_history(run.history, path=out / "curves.png", title=f"MNIST, {recipe.model}")
    metrics = {"test_accuracy": accuracy, "best_val_accuracy": best_val, "best_epoch": best_epoch,
               "epochs_run": run.history.epoch[-1], "seconds": round(seconds, 1)}
    (out / "metrics.json").write_text(json.dumps({**metrics, "recipe": asdict(recipe)}, indent=2))
    print(run.history.table(["train_loss", "train_accuracy", "val_accuracy", "test_accuracy"]))
    print(f"best val accuracy {100 * best_val:.2f} % at epoch {best_epoch}; its test accuracy "
          f"{100 * accuracy:.2f} %; {seconds:.1f} s; checkpoint {run.best_checkpoint}")
    return metrics


def smoke(out_dir: Path) -> dict[str, float]:
    """The default recipe on tiny synthetic MNIST; writes curves and reports the best checkpoint's accuracy."""
    out_dir = Path(out_dir)
    data = load_data(smoke=True)
    run = train(default_recipe(smoke=True), data, checkpoint_dir=out_dir / "checkpoints", progress=False)
    plot_history(run.history, path=out_dir / "curves.png", title="MNIST (synthetic, smoke size)")
    best = reload_best(run)
    return {"test_accuracy": test_accuracy(best, data), "val_accuracy": run.history.best("val_accuracy")[1]}
