"""Lab 03: MNIST CNN — MyConvNet and a fast small CNN, optimizer and schedule comparisons, early stopping.

The data are tensor-resident (`TensorLoader`, batched random shifts); `val_accuracy` picks `best.pt` and the
test split is evaluated once, for the chosen checkpoint.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from matplotlib.figure import Figure
from torch import nn

from labkit import config as _config
from labkit import runner
from labkit.data.augment import Compose, Normalize, RandomCrop
from labkit.data.tensor_loader import TensorLoader
from labkit.device import model_device
from labkit.distributed import DistributedContext, per_rank_batch_size
from labkit.engine import SupervisedTask, evaluate, predict
from labkit.errors import LabkitError, UsageError
from labkit.lab import LABS, Lab, LabConfig, LabData, option, register
from labkit.labs.mnist import data as mnist_data
from labkit.labs.mnist.model import build_model
from labkit.optim import OPTIMIZERS
from labkit.plots import image_grid, new_figure, plot_curves, save_figure
from labkit.tables import Table, markdown_table

#: the schedules of this lab (labkit.optim's shapes): constant; step = StepLR per epoch; warmup = linear
#: warm-up over `warmup_epochs`, then constant, per step; onecycle = OneCycleLR per step
SCHEDULES = ("constant", "step", "warmup", "onecycle")
MODELS = ("fast", "myconvnet")
#: the generated MNIST of the smoke size (written once under `synthetic_root()`, in MNIST's IDX format)
SYNTHETIC = {"n_train": 1200, "n_test": 300}


@dataclass(frozen=True)
class Config(LabConfig):
    """Lab 03's settings; the defaults are the full size of the default recipe."""

    epochs: int = option(8, "training epochs", min=1)
    batch_size: int = option(256, "global batch size (under torchrun each process takes batch/N)", min=1)
    lr: float = option(3e-3, "(peak) learning rate", gt=0)
    optimizer: str = option("adamw", "optimizer (sgd: with Nesterov momentum)", choices=OPTIMIZERS)
    nesterov: bool = option(True, "SGD: Nesterov momentum")
    weight_decay: float = option(5e-4, "weight decay on every parameter (L2 for SGD/Adam/NAdam, decoupled for "
                                 "AdamW)", min=0)
    schedule: str = option("onecycle", "learning-rate schedule: constant; step (x gamma every step-size epochs); "
                           "warmup (linear over warmup-epochs, then constant); onecycle", choices=SCHEDULES)
    step_size: int | None = option(1, "step schedule: epochs between decays", min=1)
    gamma: float = option(0.5, "step schedule: lr factor at each decay", gt=0, max=1)
    warmup_epochs: float = option(1.0, "warmup schedule: warm-up length in epochs (added to --warmup-steps)", min=0)
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy loss", min=0, max=1)
    amp: bool = option(False, "mixed precision where the device runs it natively (off: these small CNNs "
                       "train in fp32, as before)")
    # the lab's own
    model: str = option("myconvnet", "myconvnet (the course's MyConvNet, 5.07 M parameters) or fast (FastConvNet, "
                        "~30 k: seconds an epoch on a CPU)", choices=MODELS)
    width: int = option(16, "FastConvNet: channels of the first block (then 2x and 4x)", min=1)
    max_shift: int = option(2, "random shifts of up to this many pixels (0: no augmentation)", min=0, max=14)
    valid_fraction: float = option(1 / 6, "fraction of MNIST's training images held out for validation (seeded "
                                   "by --seed)", gt=0, max=0.5)
    eval_batch_size: int = option(2000, "batch size of the validation and test passes", min=1)
    download: bool = option(False, "download MNIST into --data (or LABKIT_DATA) if it is missing")
    # the notebook's experiments (not command-line options)
    compare_epochs: int = option(6, "section 4: epochs of each comparison run", min=1, cli=False)
    compare_model: str = option("myconvnet", "section 4: the model of the comparison (the student's MyConvNet)",
                                choices=MODELS, cli=False)
    compare_images: int | None = option(None, "section 4: training images of each comparison run (None: all)",
                                        min=1, cli=False)
    compare_val_images: int | None = option(None, "section 4: validation images of each comparison run (None: "
                                            "all)", min=1, cli=False)
    compare_batch: int = option(128, "section 4: batch size of each comparison run", min=1, cli=False)
    study_model: str = option("fast", "sections 5 and 7: the model of the early-stopping and softmax-mistake runs",
                              choices=MODELS, cli=False)
    early_stopping_epochs: int = option(20, "section 5: epoch cap of the early-stopping run", min=1, cli=False)
    early_stopping_patience: int = option(3, "section 5: epochs without improvement before stopping", min=1,
                                          cli=False)
    mistake_epochs: int = option(3, "section 7: epochs of each softmax-mistake run", min=1, cli=False)
    myconvnet_epochs: int = option(2, "section 8: epochs of the MyConvNet run", min=1, cli=False)
    myconvnet_images: int | None = option(None, "section 8: training images of the MyConvNet run (None: all)",
                                          min=1, cli=False)
    myconvnet_batch: int = option(256, "section 8: batch size of the MyConvNet run", min=1, cli=False)
    myconvnet_lr: float = option(3e-3, "section 8: peak lr of the MyConvNet run", gt=0, cli=False)


#: the course's comparison, table label -> recipe: same model (MyConvNet), data, epochs and seed; only the
#: optimizer, schedule and lr differ. The SGD runs diagnose the student's lr 3e-4 with momentum 1e-5.
COMPARISONS: dict[str, str] = {
    "Adam, constant": "adam-constant",
    "Adam + StepLR": "adam-step",
    "Adam + warm-up": "adam-warmup",
    "NAdam + StepLR": "nadam-step",
    "SGD, student's (lr 3e-4, momentum 1e-5)": "sgd-student",
    "SGD, lr 3e-4, momentum 0.9": "sgd-student-momentum",
    "SGD, lr 0.05, Nesterov momentum 0.9": "sgd-momentum",
}
#: StepLR of the comparison: the lr halves every epoch, so it visibly decays within even a 3-epoch run
STEP = {"step_size": 1, "gamma": 0.5}


@register
class MNIST(Lab):
    name = "mnist"
    title = "Lab 03: MNIST CNN"
    Config = Config
    sizes: ClassVar[dict[str, dict[str, Any]]] = {
        # seconds on a CPU, on 1,200 + 300 generated seven-segment digits, FastConvNet
        "smoke": {"model": "fast", "epochs": 3, "batch_size": 64, "compare_epochs": 2, "compare_images": 96,
                  "compare_val_images": 100,
                  "compare_batch": 32,
                  "early_stopping_epochs": 8, "early_stopping_patience": 2, "mistake_epochs": 2,
                  "myconvnet_epochs": 2, "myconvnet_images": 480, "myconvnet_batch": 32,
                  "recipes": {"default": {"lr": 1e-2}}},
        # real MNIST: MyConvNet on the full split (50,000 train, 10,000 validation) for 8 epochs (the wall time and
        # load are in results/mnist/laptop/reference.json); the notebook's seven comparison runs on the first 2,000
        # training and 1,000 validation images for 3 epochs in batches of 64 (StepLR halves the lr each epoch); the
        # early-stopping and softmax runs on FastConvNet; the student's MyConvNet run on 8,000 images, 2 epochs
        "laptop": {"compare_epochs": 3, "compare_images": 2_000, "compare_val_images": 1_000,
                   "compare_batch": 64, "early_stopping_epochs": 12, "early_stopping_patience": 2,
                   "mistake_epochs": 2, "myconvnet_epochs": 2, "myconvnet_images": 8_000, "myconvnet_batch": 128},
        # the course report's experiment (the config's defaults)
        "full": {},
    }
    recipes: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},  # AdamW one-cycle, label smoothing 0.1, random shifts (on the config's model)
        "adam-constant": {"optimizer": "adam", "schedule": "constant", "lr": 1e-3},
        "adam-step": {"optimizer": "adam", "schedule": "step", "lr": 1e-3, **STEP},
        "adam-warmup": {"optimizer": "adam", "schedule": "warmup", "lr": 1e-3},
        "nadam-step": {"optimizer": "nadam", "schedule": "step", "lr": 1e-3, **STEP},
        # the course report's SGD: lr 3e-4, momentum 1e-5 (no Nesterov)
        "sgd-student": {"optimizer": "sgd", "schedule": "constant", "lr": 3e-4, "momentum": 1e-5,
                        "nesterov": False},
        "sgd-student-momentum": {"optimizer": "sgd", "schedule": "constant", "lr": 3e-4, "momentum": 0.9,
                                 "nesterov": False},
        "sgd-momentum": {"optimizer": "sgd", "schedule": "constant", "lr": 0.05, "momentum": 0.9},
    }
    monitor = "val_accuracy"
    epoch_splits = ("val",)
    final_splits = ("test",)
    unused_options = ("milestones", "final_lr_fraction", "patience_lr")

    def load_data(self, cfg: Config, ctx: Any) -> LabData:
        return lab_data(cfg, read_mnist(cfg), ctx)

    def build_model(self, cfg: Config, info: Mapping[str, Any]) -> nn.Module:
        return build_model(cfg.model, **({"width": cfg.width} if cfg.model == "fast" else {}))

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--compare", action="store_true",
                            help="run the course's comparison on MyConvNet instead (Adam constant / StepLR / warm-up, "
                                 "NAdam + StepLR, three SGD settings) for --epochs epochs at the size's comparison "
                                 "images and batch; writes OUT/compare.md and OUT/compare.png")

    def main(self, cfg: Config, args: argparse.Namespace) -> dict[str, Any] | None:
        if not getattr(args, "compare", False):
            return None  # the runner's default: one run, then report
        if getattr(args, "resume", None) is not None:
            raise UsageError("--compare trains five new runs; it cannot --resume a checkpoint.")
        return compare_main(cfg)

    def reference(self, size: str, out_dir: Path) -> dict[str, dict[str, Any]]:
        """`labkit reproduce mnist`: the default recipe and the MyConvNet comparison (the chosen set-up's test
        accuracy once; three seeds' min/median/max best val accuracy). At full size the default recipe only."""
        out = Path(out_dir)
        cfg = self.config(size, out=str(out / "default"))
        data = runner.load_data(self, cfg)
        keys = ("best_val_accuracy", "best_epoch", "test_accuracy", "train_loss", "train_accuracy", "epochs_run",
                "seconds")

        def numbers(run: runner.Run, *extra: str) -> dict[str, Any]:
            summary = run.summary()
            return {k: summary[k] for k in (*keys, *extra) if k in summary}

        records = {"default": numbers(runner.run(self, cfg, data=data))}
        if size == "full":
            return records
        runs = compare(cfg.replace(out=str(out)), data)
        best = chosen_setup(runs)
        for label, run in runs.items():
            records[f"compare: {label}"] = {**numbers(run), "last_lr": run.history.lr[-1]}
        records[f"compare: {best}"]["chosen"] = True
        records[f"compare: {best}"]["test_accuracy"] = accuracy(runs[best].model, data.source, "test")
        plot_comparison(runs, size, path=out / "compare.png")
        # a ranking stands on seeds: the same comparison with two more seeds (best val accuracy of each)
        seeds = [runs] + [compare(cfg.replace(seed=cfg.seed + k, out=str(out / f"seed{cfg.seed + k}")), data,
                                  write_files=False) for k in (1, 2)]
        for label in runs:
            values = sorted(round(r[label].history.best("val_accuracy")[1], 4) for r in seeds)
            records[f"compare: {label}"].update(val_accuracy_min=values[0], val_accuracy_median=values[1],
                                                val_accuracy_max=values[2])
        return records

    def report(self, run: runner.Run) -> dict[str, Any]:
        h = run.history
        if not len(h):
            print(f"no epoch completed ({h.stop_reason or 'stopped'}): no results to report")
            return {}
        print(h.table([k for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy") if k in h]))
        if h.diverged or "val_accuracy" not in h:
            print(f"{h.stop_reason or 'no validation results'}: no best epoch or test accuracy to report")
            return {}
        epoch, best = h.best("val_accuracy")
        print(f"best val accuracy {100 * best:.2f} % at epoch {epoch}; its test accuracy "
              f"{100 * _test_accuracy(run):.2f} % "
              f"(evaluated once); {h.total_seconds:.1f} s; checkpoint {run.best_checkpoint or run.last_checkpoint}")
        return {}


LAB = LABS[MNIST.name]


def synthetic_root() -> Path:
    """Where the smoke size generates its MNIST: a cache folder, never LABKIT_DATA (read-only on a course server)."""
    return _config.cache_dir() / "synthetic" / "mnist"


def read_mnist(cfg: Config) -> mnist_data.MNISTData:
    """MNIST split into train/val/test (val seeded by `cfg.seed`): `cfg.data` at every size (IDX or `.pth`);
    without it generated MNIST at smoke size, else real MNIST from LABKIT_DATA or the shared copy."""
    root: str | Path | None = cfg.data
    if cfg.size == "smoke" and root is None:
        root = synthetic_root()
        if not mnist_data.idx_available(root):
            mnist_data.write_synthetic_mnist(root, seed=0, **SYNTHETIC)
    return mnist_data.load_mnist(root, download=cfg.download, valid_fraction=cfg.valid_fraction, seed=cfg.seed)


class RandomShift(RandomCrop):
    """Shift each image by up to `max_shift` pixels in each direction (a crop of the padded image)."""

    def __init__(self, max_shift: int = 2) -> None:
        super().__init__(padding=max_shift)


def transform(max_shift: int = 0) -> Compose:
    """Random shifts of up to `max_shift` pixels (on uint8), then (x / 255 - 0.1307) / 0.3081, as whole batches."""
    shift = [RandomShift(max_shift)] if max_shift > 0 else []
    return Compose([*shift, Normalize((mnist_data.MEAN,), (mnist_data.STD,))])


def loader(source: mnist_data.MNISTData, split: str, batch_size: int = 2000, device: Any = None,
           **kwargs: Any) -> TensorLoader:
    """A tensor-resident loader of one split: uint8 (N, 1, 28, 28) on `device`, normalised batch by batch."""
    images, labels = source.split(split)
    kwargs.setdefault("transform", transform())
    return TensorLoader(images.unsqueeze(1), labels, batch_size=batch_size, device=device, **kwargs)


def lab_data(cfg: Config, source: mnist_data.MNISTData,
             ctx: DistributedContext | torch.device | None = None) -> LabData:
    """The runner's loaders of `source` for `cfg` on `ctx.device` (or a device; default the CPU), sharded by rank."""
    if not isinstance(ctx, DistributedContext):
        ctx = DistributedContext(0, 1, 0, torch.device(ctx or "cpu"), None)
    shard = {"rank": ctx.rank, "world_size": ctx.world_size, "device": ctx.device}
    sizes = source.sizes()
    batch = min(per_rank_batch_size(cfg.batch_size, ctx.world_size), max(1, sizes["train"] // ctx.world_size))
    train = loader(source, "train", batch, shuffle=True, drop_last=True, transform=transform(cfg.max_shift),
                   seed=cfg.seed, **shard)
    evals = {split: loader(source, split, cfg.eval_batch_size, **shard) if sizes[split] else None
             for split in ("val", "test")}
    generated = cfg.size == "smoke" and cfg.data is None
    what = "generated seven-segment digits (smoke size, MNIST's file format)" if generated else "MNIST"
    return LabData(train=train, eval=evals, source=source, info={"num_classes": mnist_data.NUM_CLASSES},
                   description=f"{what} from {source.source}: train {sizes['train']:,}, val {sizes['val']:,} "
                               f"(held out of train, seed {cfg.seed}), test {sizes['test']:,}",
                   split_names={"val": f"validation ({sizes['val']:,} held out of train)",
                                "test": "generated test digits" if generated else "MNIST test set"})


def runs_folder(size: str) -> Path:
    """Where the notebook's runs go: `runs/mnist-lab` ($LABKIT_RUNS); a temporary folder at smoke size."""
    return Path(tempfile.mkdtemp(prefix="labkit-mnist-smoke-")) if size == "smoke" else _config.runs_dir() / "mnist-lab"


# --- the notebook's experiments, each run through `labkit.runner.run` ----------------------------------

def with_recipe(cfg: Config, recipe: str, **changes: Any) -> Config:
    """`cfg` with a named recipe's overrides (and `changes`) on top; its other settings are kept."""
    return cfg.replace(**{**LAB.recipes[recipe], **changes}, recipe=recipe)


def myconvnet_config(cfg: Config, out: str | Path | None = None) -> Config:
    """Section 8's MyConvNet run: the default recipe with the section's epochs, batch and lr."""
    return cfg.replace(model="myconvnet", epochs=cfg.myconvnet_epochs, batch_size=cfg.myconvnet_batch,
                       lr=cfg.myconvnet_lr, **({"out": str(out)} if out is not None else {}))


def compare_config(cfg: Config, label: str, out: str | Path | None = None) -> Config:
    """One comparison run's config: the section-4 model, epochs and batch, and the comparison's recipe."""
    return with_recipe(cfg.replace(model=cfg.compare_model, epochs=cfg.compare_epochs, batch_size=cfg.compare_batch),
                       COMPARISONS[label], **({"out": str(out)} if out is not None else {}))


def compare(cfg: Config, data: LabData | None = None, labels: Sequence[str] = tuple(COMPARISONS), *,
            progress: bool | None = None, write_files: bool = True) -> dict[str, runner.Run]:
    """One run per comparison (`compare_config`) into OUT/compare/<recipe>, on the first `compare_images` /
    `compare_val_images` of `data` and no test images: the test split is for the chosen set-up, once."""
    unknown = [label for label in labels if label not in COMPARISONS]
    if unknown:
        raise LabkitError(f"unknown comparison {unknown[0]!r}: choose from {', '.join(COMPARISONS)}.")
    data = data if data is not None else runner.load_data(LAB, cfg)
    seen = data.source.head(train=cfg.compare_images, val=cfg.compare_val_images, test=0)
    out = runner.default_out_dir(LAB, cfg)
    runs = {}
    for label in labels:
        run_cfg = compare_config(cfg, label, out / "compare" / COMPARISONS[label])
        runs[label] = runner.run(LAB, run_cfg, data=lab_data(run_cfg, seen, data.train.device), progress=progress,
                                 write_files=write_files)
    return runs


def chosen_setup(runs: Mapping[str, runner.Run]) -> str:
    """The comparison run with the best validation accuracy (the first of equals)."""
    if not runs:
        raise LabkitError("no comparison runs to choose from.")
    return max(runs, key=lambda name: runs[name].history.best("val_accuracy")[1])


def histories(runs: Mapping[str, runner.Run]) -> dict[str, Any]:
    """{name: History} of several runs, for `labkit.plots.plot_curves`."""
    return {name: run.history for name, run in runs.items()}


def _test_accuracy(run: runner.Run) -> float:
    return run.final.get("test", {}).get("accuracy", math.nan)


def comparison_table(runs: Mapping[str, runner.Run]) -> Table:
    """Final train loss, best val accuracy (epoch), first and last lr, seconds (no test split)."""
    rows = []
    for name, run in runs.items():
        h = run.history
        epoch, val = h.best("val_accuracy")
        lrs = h.lr
        rows.append([name, f"{h.last('train_loss'):.4f}", f"{100 * val:.2f} % ({epoch})",
                     f"{lrs[0]:.2g} → {lrs[-1]:.2g}", f"{h.total_seconds:.1f}"])
    return Table(["run", "final train loss", "best val acc (epoch)", "lr, first → last epoch", "seconds"], rows,
                 numeric_from=1)


def compare_main(cfg: Config) -> dict[str, float]:
    """`labkit run mnist --compare`: the runs, their table and figure, the chosen set-up's test accuracy."""
    from labkit.files import write_text_atomic

    cfg = cfg.replace(compare_epochs=cfg.epochs)
    data = runner.load_data(LAB, cfg)
    runs = compare(cfg, data)
    table = comparison_table(runs)
    print(table)
    best = chosen_setup(runs)
    test = accuracy(runs[best].model, data.source, "test")
    line = f"chosen on validation: {best}; its test accuracy {100 * test:.2f} % (evaluated once)"
    print(line)
    out = runner.default_out_dir(LAB, cfg)
    plot_comparison(runs, cfg.size, path=out / "compare.png")
    write_text_atomic(out / "compare.md", f"{table}\n\n{line}\n")
    print(f"table and figures written under {out}/")
    return {name: run.history.best("val_accuracy")[1] for name, run in runs.items()}


def size_note(size: str) -> str:
    return " (smoke size, synthetic data)" if size == "smoke" else ""


def plot_comparison(runs: Mapping[str, runner.Run], size: str = "", path: str | Path | None = None) -> Figure:
    """Validation accuracy, train loss and lr per epoch, one colour per run."""
    fig = new_figure((15, 3.8))
    axes = fig.subplots(1, 3)
    hist = histories(runs)
    for ax, key, title in zip(axes, ("val_accuracy", "train_loss", "lr"),
                              ("validation accuracy", "train loss", "learning rate")):
        plot_curves(hist, key, ax=ax, title=f"{title}{size_note(size)}")
    axes[2].set_yscale("log")
    for ax in axes[1:]:
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()
    if path is not None:
        save_figure(fig, path)
    return fig


# --- predictions, the two classic mistakes --------------------------------------------------------

def predict_logits(model: nn.Module, source: mnist_data.MNISTData,
                   split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, 10), labels (N,)) of one split, on the CPU, in the split's order."""
    return predict(model, loader(source, split, device=model_device(model)))


def accuracy(model: nn.Module, source: mnist_data.MNISTData, split: str = "test") -> float:
    """Argmax accuracy of `model` on one split (evaluated where the model is)."""
    return evaluate(model, loader(source, split, device=model_device(model)), metrics=("accuracy",))["accuracy"]


def argmax_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The right way: the class with the largest logit (count / n: exact, unlike a float32 mean)."""
    return int((logits.argmax(dim=1) == labels).sum()) / len(labels)


def sampled_accuracy(logits: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """The classic mistake: a label drawn from softmax(logits) instead of the argmax (lower, and random)."""
    gen = torch.Generator().manual_seed(seed)
    drawn = torch.multinomial(torch.softmax(logits.float(), dim=1), 1, generator=gen).squeeze(1)
    return int((drawn == labels).sum()) / len(labels)


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


def softmax_mistake(cfg: Config, data: LabData | None = None, *,
                    progress: bool | None = None) -> dict[str, runner.Run]:
    """The same model (`cfg.study_model`) trained twice (same seed, plain cross-entropy): logits, and softmax,
    into the loss."""
    cfg = cfg.replace(label_smoothing=0.0, model=cfg.study_model)
    out = runner.default_out_dir(LAB, cfg) / "softmax-mistake"
    options = {"data": data, "task": SupervisedTask(nn.CrossEntropyLoss()), "progress": progress,
               "write_files": False}
    right = runner.run(LAB, cfg.replace(out=str(out / "logits")), **options)
    wrong = runner.run(LAB, cfg.replace(out=str(out / "softmax")), **options,
                       model=lambda: SoftmaxOutput(LAB.build_model(cfg, {})))
    return {"logits -> CrossEntropyLoss (right)": right, "softmax -> CrossEntropyLoss (mistake)": wrong}


def mistakes_table(runs: Mapping[str, runner.Run]) -> str:
    """Markdown: final train loss, best val accuracy, the chosen checkpoint's test accuracy."""
    rows = [[name, f"{run.history.last('train_loss'):.4f}", f"{100 * run.history.best('val_accuracy')[1]:.2f} %",
             f"{100 * _test_accuracy(run):.2f} %"] for name, run in runs.items()]
    return markdown_table(["run", "final train loss", "best val acc", "test acc (chosen checkpoint)"], rows)


def misclassified(logits: torch.Tensor, labels: torch.Tensor, limit: int = 30) -> torch.Tensor:
    """Indices of wrong predictions, the most confident mistakes first."""
    probs = torch.softmax(logits, dim=1)
    predicted = probs.argmax(dim=1)
    wrong = (predicted != labels).nonzero().flatten()
    confidence = probs[wrong, predicted[wrong]]
    return wrong[confidence.argsort(descending=True)][:limit]


# --- figures --------------------------------------------------------------------------------------

def sample_grid(source: mnist_data.MNISTData, per_class: int = 6, size: str = "",
                path: str | Path | None = None) -> Figure:
    """The first `per_class` training images of each digit, one column per digit."""
    images, labels = source.train_images, source.train_labels
    picked = []
    for row in range(per_class):
        for digit in range(10):
            where = (labels == digit).nonzero().flatten()
            picked.append(images[where[row]] if row < len(where) else torch.zeros_like(images[0]))
    return image_grid(torch.stack(picked), [str(d) for d in range(10)], ncols=10, cell=1.0,
                      title=f"training images, one column per digit{size_note(size)}", path=path)


def class_counts(source: mnist_data.MNISTData) -> dict[str, torch.Tensor]:
    """Images per digit in each split."""
    return {split: torch.bincount(source.split(split)[1], minlength=10) for split in ("train", "val", "test")}


def plot_class_counts(source: mnist_data.MNISTData, size: str = "", path: str | Path | None = None) -> Figure:
    """Grouped bars: images per digit in train, val and test."""
    fig = new_figure((8, 3))
    ax = fig.subplots()
    width = 0.27
    for i, (split, values) in enumerate(class_counts(source).items()):
        ax.bar([d + (i - 1) * width for d in range(10)], values.tolist(), width,
               label=f"{split} ({int(values.sum()):,})")
    ax.set_xticks(range(10))
    ax.set_xlabel("digit")
    ax.set_ylabel("images")
    ax.set_title(f"class counts{size_note(size)}")
    ax.legend(fontsize=8)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_confusion_matrix(matrix: torch.Tensor, title: str = "confusion matrix (test)", size: str = "",
                          path: str | Path | None = None) -> Figure:
    """Counts, coloured by the mistakes only (diagonal counts in grey); the scale spans at least 0..1, so a
    matrix with no mistakes is white (and says so) instead of a solid colour over a −0.1..0.1 bar."""
    matrix = torch.as_tensor(matrix)
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise LabkitError(f"a confusion matrix is square (classes x classes), got shape {tuple(matrix.shape)}.")
    fig = new_figure((5.2, 4.6))
    ax = fig.subplots()
    off = matrix.clone().float()
    off.fill_diagonal_(float("nan"))
    mistakes = int(matrix.sum() - matrix.diag().sum())
    image = ax.imshow(off.numpy(), cmap="Reds", vmin=0, vmax=max(1.0, float(off.nan_to_num(0).max())))
    bar = fig.colorbar(image, ax=ax, shrink=0.8, label="mistakes")
    from matplotlib.ticker import MaxNLocator

    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()
    n = matrix.shape[0]
    for t in range(n):
        for p in range(n):
            value = int(matrix[t, p])
            if value:
                ax.text(p, t, str(value), ha="center", va="center", fontsize=7,
                        color="grey" if t == p else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    what = "no mistakes" if mistakes == 0 else f"{mistakes:,} mistakes"
    ax.set_title(f"{title}: {what} of {int(matrix.sum()):,}{size_note(size)}", fontsize=10)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_misclassified(source: mnist_data.MNISTData, logits: torch.Tensor, labels: torch.Tensor, limit: int = 30,
                       split: str = "test", size: str = "", path: str | Path | None = None) -> Figure:
    """The most confident mistakes, titled 'true→predicted (confidence)'; with none, a figure that says so."""
    index = misclassified(logits, labels, limit)
    probs = torch.softmax(logits[index], dim=1)
    titles = [f"{int(labels[i])}→{int(p.argmax())} ({p.max():.0%})" for i, p in zip(index, probs)]
    return image_grid(source.split(split)[0][index], titles, ncols=10, cell=1.0,
                      empty=f"no misclassified {split} digits: all {len(labels):,} are right",
                      title=f"misclassified {split} digits: true→predicted{size_note(size)}", path=path)
