"""One lab shape: a `Lab` subclass registered with `@register` in its package `labkit/labs/<lab>/`: a `Config`
(extending `LabConfig`), `sizes`, `recipes`, `load_data` and `build_model`; `labkit.runner.run` does the rest
and `labkit run <lab>` makes one option per config field."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import os
import pkgutil
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from labkit import config as _config
from labkit.engine import SupervisedTask
from labkit.errors import UsageError
from labkit.optim import OPTIMIZERS, SCHEDULES

SIZES = ("smoke", "laptop", "full")


def option(default: Any, help: str, *, min: float | None = None, max: float | None = None,
           gt: float | None = None, choices: Iterable[Any] | None = None, cli: bool = True) -> Any:
    """A config field with its help and valid range (`min`/`max` inclusive, `gt` exclusive), checked when a config
    is made and when an option is parsed; `cli=False` keeps it out of `labkit run`'s options."""
    meta = {"help": help, "min": min, "max": max, "gt": gt,
            "choices": tuple(choices) if choices is not None else None, "cli": cli}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple (immutable) as the default of a config field")
    return field(default=default, metadata=meta)


def shown(value: Any) -> str:
    """A config value as an option takes it: 0.01, on/off, 5,10, none."""
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def check_value(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    flag = "--" + name.replace("_", "-")
    if value is None:
        return
    if (choices := meta.get("choices")) is not None and value not in choices:
        raise UsageError(f"{flag} must be one of {', '.join(map(str, choices))}, not {value!r}.")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise UsageError(f"{flag} must be a finite number, not {value!r}.")
    low, high, above = meta.get("min"), meta.get("max"), meta.get("gt")
    if above is not None and not value > above:
        raise UsageError(f"{flag} must be greater than {above:g}, got {value!r}.")
    if low is not None and value < low:
        raise UsageError(f"{flag} must be at least {low:g}, got {value!r}.")
    if high is not None and value > high:
        raise UsageError(f"{flag} must be at most {high:g}, got {value!r}.")


@dataclass(frozen=True)
class LabConfig:
    """What every lab's run is made of; a lab's `Config` extends it, its sizes and recipes override it."""

    size: str = option("full", "how big the run is (see `Lab.sizes`)", choices=SIZES, cli=False)
    recipe: str = option("default", "named recipe of this lab", cli=False)
    # training
    epochs: int = option(10, "training epochs", min=1)
    batch_size: int = option(128, "global batch size (under torchrun each process takes batch/N)", min=1)
    lr: float = option(0.1, "(peak) learning rate", gt=0)
    optimizer: str = option("sgd", "optimizer", choices=OPTIMIZERS)
    momentum: float = option(0.9, "SGD momentum (0: plain SGD)", min=0, max=1)
    nesterov: bool = option(False, "SGD: Nesterov momentum")
    weight_decay: float = option(0.0, "weight decay (L2 for SGD/Adam, decoupled for AdamW)", min=0)
    decay_matrices_only: bool = option(False, "weight decay on weight matrices only (not biases, norms, embeddings)")
    schedule: str = option("constant", "learning-rate schedule (see labkit.optim)", choices=SCHEDULES)
    step_size: int | None = option(None, "step schedule: epochs between decays (default a third of the run)", min=1)
    gamma: float = option(0.1, "step/multistep/plateau schedules: lr factor at each decay", gt=0, max=1)
    milestones: tuple[int, ...] | None = option(None, "multistep: epochs after which lr drops (default: half)", min=1)
    warmup_steps: int = option(0, "warm-up length in optimizer steps (warmup, warmup_cosine)", min=0)
    warmup_epochs: float = option(0.0, "warm-up length in epochs, added to --warmup-steps", min=0)
    final_lr_fraction: float = option(0.0, "warmup_cosine: final lr as a fraction of the peak", min=0, max=1)
    pct_start: float = option(0.25, "onecycle: fraction of the steps spent warming up", gt=0, max=1)
    div_factor: float = option(25.0, "onecycle: the warm-up starts at lr / div_factor", gt=0)
    final_div_factor: float = option(1e4, "onecycle: the run ends at lr / (div_factor x final_div_factor)", gt=0)
    cycle_momentum: bool = option(True, "onecycle: cycle momentum (or Adam's beta1) against the lr")
    patience_lr: int = option(0, "plateau schedule: epochs without improvement before the lr drops", min=0)
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy loss", min=0, max=1)
    grad_clip: float | None = option(None, "clip the gradient norm to this value", gt=0)
    patience: int = option(0, "early stopping after this many epochs without improvement (0: off)", min=0)
    amp: bool = option(True, "mixed precision where the device runs it natively (bf16 on CUDA and on "
                       "CPUs with AVX-512 BF16 or AMX, fp16 on older GPUs); fp32 elsewhere")
    channels_last: bool = option(True, "channels_last memory format for convolutions (CUDA and CPU)")
    # where and how
    seed: int = option(0, "random seed (same seed, same run)", min=0)
    device: str | None = option(None, "cpu, cuda, cuda:1 or mps (default: LABKIT_DEVICE, else the best available)")
    data: str | None = option(None, "dataset folder (default: the lab's usual place under LABKIT_DATA)")
    out: str | None = option(None, "output folder for checkpoints, figures and logs (default runs/<lab>)")
    tensorboard: bool = option(True, "write TensorBoard logs (scalars and the model graph) under OUT/tensorboard")
    at_epochs: tuple[int, ...] = option((), "also keep checkpoints of these epochs (epoch_005.pt, ...)", min=1)
    time_budget: float | None = option(None, "stop after this many seconds of training, inside an epoch if need "
                                       "be (a checkpoint to resume from is written)", gt=0)
    sync_bn: bool = option(False, "under torchrun on GPUs: SyncBatchNorm, so each layer normalises over the global "
                           "batch like one process would (off: per-process batch statistics)")
    ddp_timeout: float = option(300.0, "under torchrun: seconds to wait for another process before giving up", gt=0)
    checkpoint_minutes: float | None = option(None, "also write last.pt inside epochs every this many minutes "
                                              "(exact resume from that step)", gt=0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            for item in value if isinstance(value, (tuple, list)) else (value,):
                check_value(f.name, item, f.metadata)

    def replace(self, **changes: Any) -> LabConfig:
        if unknown := set(changes) - {f.name for f in dataclasses.fields(self)}:
            raise UsageError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}; its fields: "
                             f"{', '.join(f.name for f in dataclasses.fields(self))}.")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:  # tuples as lists, as stored in checkpoints and metrics.json
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LabConfig:
        """The config saved by `to_dict` (unknown fields ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known})

    @property
    def out_dir(self) -> Path | None:
        return Path(self.out).expanduser() if self.out else None


def config_fields(cls: type[LabConfig]) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


@dataclass
class LabData:
    """What a lab's `load_data` returns."""

    train: Any                                   # an iterable of batches (TensorLoader, DataLoader, ...)
    eval: dict[str, Any] = field(default_factory=dict)   # {"val": loader, "test": loader}
    info: dict[str, Any] = field(default_factory=dict)   # model-shaping facts (num_classes, vocab, ...)
    description: str = ""                        # one line: which data, which splits, how many items
    source: Any = None                           # the lab's own data object (MNISTData, Corpus, ...)
    split_names: dict[str, str] = field(default_factory=dict)  # e.g. {"test": "hold-out (5,000 of train)"}

    def split_label(self, split: str) -> str:
        return self.split_names.get(split, split)


class Lab:
    """Base of every lab; override the class attributes and `load_data` / `build_model`."""

    name: ClassVar[str] = ""              # the command-line name: `labkit run <name>`
    title: ClassVar[str] = ""             # e.g. "Lab 03: MNIST CNN"
    Config: ClassVar[type[LabConfig]] = LabConfig
    sizes: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {}, "laptop": {}, "full": {}}
    #: named overrides applied before the size's; a size may refine one under sizes[size]["recipes"]
    recipes: ClassVar[dict[str, dict[str, Any]]] = {"default": {}}
    metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    #: splits evaluated after every epoch (curves); "test" belongs here only where nothing is chosen by it
    epoch_splits: ClassVar[tuple[str, ...]] = ("val",)
    #: the validation metric that picks best.pt and drives early stopping (never a test metric)
    monitor: ClassVar[str | None] = "val_accuracy"
    final_splits: ClassVar[tuple[str, ...]] = ("test",)  # evaluated once, at the end, with the chosen checkpoint
    curve_keys: ClassVar[tuple[str, ...] | None] = None  # history keys the run's curves.png shows (None: all)
    checkpoint_every: ClassVar[int] = 1  # write last.pt every this many epochs (and at the end)
    #: shared config fields this lab does not use: not offered by `labkit run <lab>`
    unused_options: ClassVar[tuple[str, ...]] = ()
    #: keyword arguments for DistributedDataParallel under torchrun (e.g. find_unused_parameters=True)
    ddp_options: ClassVar[dict[str, Any]] = {}

    def config(self, size: str = "full", recipe: str | None = None, **overrides: Any) -> LabConfig:
        """The config of a size and recipe, with keyword overrides (None values are ignored)."""
        if size not in SIZES:
            raise UsageError(f"--size must be one of {', '.join(SIZES)}, not {size!r}.")
        recipe = recipe or next(iter(self.recipes))
        if recipe not in self.recipes:
            raise UsageError(f"{self.name} has no recipe {recipe!r}; its recipes: {', '.join(self.recipes)}.")
        sized = dict(self.sizes.get(size, {}))
        per_recipe = sized.pop("recipes", {}).get(recipe, {})
        values = {**self.recipes[recipe], **sized, **per_recipe,
                  **{k: v for k, v in overrides.items() if v is not None}, "size": size, "recipe": recipe}
        fields = {f.name for f in dataclasses.fields(self.Config)}
        if unknown := set(values) - fields:
            raise UsageError(f"{self.name} has no setting {', '.join(sorted(unknown))}; its settings: "
                             f"{', '.join(sorted(fields))}.")
        return self.Config(**values)

    def load_data(self, cfg: LabConfig, ctx: Any) -> LabData:
        raise NotImplementedError

    def build_model(self, cfg: LabConfig, info: Mapping[str, Any]) -> nn.Module:
        raise NotImplementedError

    def task(self, cfg: LabConfig) -> Any:
        """How one batch becomes a loss (default: cross-entropy with the config's label smoothing)."""
        return SupervisedTask(nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing))

    def graph_input(self, cfg: LabConfig, data: LabData) -> Any:
        """An example input for TensorBoard's model graph (default: one item of the first batch)."""
        return next(iter(data.train))[0][:1]

    def report(self, run: Any) -> dict[str, Any]:
        """The lab's own figures and prints after a command-line run; returns extra metrics."""
        return {}

    def add_arguments(self, parser: Any) -> None:
        """Command-line options beyond the config's fields (e.g. `--compare`)."""

    #: extra top-level commands of this lab: {"compare": (add_arguments, main, "one line of help")}
    commands: ClassVar[dict[str, tuple[Any, Any, str]]] = {}
    #: summary keys a reference run records (None: every number of `Run.summary()`)
    reference_keys: ClassVar[tuple[str, ...] | None] = None

    def main(self, cfg: LabConfig, args: Any) -> dict[str, Any] | None:
        """`labkit run <lab>`: None runs the default (one run of the config, then `report`); a result replaces it."""

    def reference(self, size: str, out_dir: Path) -> dict[str, dict[str, Any]] | None:
        """`labkit reproduce`: None runs the first recipe into `out_dir/<recipe>/`; {name: numbers} replaces it."""

    def smoke(self, out_dir: Path) -> dict[str, Any] | None:
        """`labkit smoke`: None runs the smoke size into `out_dir` (then `report`); a result replaces it."""


LABS: dict[str, Lab] = {}  # name -> Lab, filled by `@register` when a lab's package is imported


def register(cls: type[Lab]) -> type[Lab]:
    """Class decorator: add a lab to `LABS` (a test may register a toy lab)."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a `name`")
    LABS[cls.name] = cls()
    return cls


def discover() -> dict[str, Lab]:
    """Import every package under `labkit.labs` (each registers its lab; nothing lists them), ordered by title."""
    import labkit.labs

    for info in (i for i in pkgutil.iter_modules(labkit.labs.__path__, "labkit.labs.") if i.ispkg):
        importlib.import_module(info.name)
    return dict(sorted(LABS.items(), key=lambda item: (item[1].title or item[0], item[0])))


def lab_names() -> list[str]:
    return list(discover())


def get_lab(name: str | Lab) -> Lab:
    if isinstance(name, Lab):
        return name
    with contextlib.suppress(ImportError, ValueError):  # its own package first, fast (tiny-imagenet: tiny_imagenet)
        importlib.import_module(f"labkit.labs.{name.replace('-', '_')}")
    labs = LABS if name in LABS else discover()
    if name not in labs:
        raise UsageError(f"unknown lab {name!r}; the labs are: {', '.join(labs)}.")
    return labs[name]


def choose_size(explicit: str | None = None) -> tuple[str, str]:
    """(size, why): `explicit`, else `LABKIT_SIZE`, else smoke under `LABKIT_SMOKE=1`, else full on a GPU, laptop."""
    env = os.environ.get("LABKIT_SIZE", "").strip()
    for given, what, why in ((explicit, "size", "chosen in the notebook"), (env, "LABKIT_SIZE", f"LABKIT_SIZE={env}")):
        if given:
            if given not in SIZES:
                raise UsageError(f"{what} must be one of {', '.join(SIZES)}, not {given!r}.")
            return given, why
    if _config.is_smoke():
        return "smoke", "LABKIT_SMOKE=1 (tests and CI)"
    if torch.cuda.is_available():
        return "full", f"a GPU is available ({torch.cuda.get_device_name(0)})"
    return "laptop", "no GPU: the laptop size keeps a CPU run to about 15 minutes"
