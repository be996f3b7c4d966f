"""Lab 04: ResNet18 on Tiny-ImageNet-200 — train, checkpoint, resume, evaluate, compare, ablate.

    labkit run tiny-imagenet --data ~/data/tiny-imagenet-200 --epochs 10 --lr 0.1
    labkit run tiny-imagenet --resume runs/tiny-imagenet/checkpoints/epoch_005.pt    # trains epochs 6-10
    labkit run tiny-imagenet --resume runs/tiny-imagenet/checkpoints/best.pt --evaluate
    labkit compare runs/tiny-imagenet/checkpoints/epoch_005.pt runs/tiny-imagenet/checkpoints/epoch_010.pt
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from labkit import config, runner
from labkit.checkpoint import LENGTH_SHAPED_SCHEDULES, load_checkpoint
from labkit.distributed import per_rank_batch_size
from labkit.engine import evaluate, predict
from labkit.errors import CheckpointError, DataError, LabkitError, UsageError
from labkit.lab import Lab, LabConfig, LabData, option, register
from labkit.labs.tiny_imagenet import data as tiny
from labkit.labs.tiny_imagenet.model import ARCHS, build_model, parse_arch

METRICS = ("accuracy", "top5")
SCHEDULES = ("cosine", "step", "onecycle", "constant")
#: ResNet options whose defaults give torchvision's ResNet18 (the course model, pretrained weights)
MODEL_DEFAULTS = {"width": 64, "dropout": 0.0, "batch_norm": True, "residual": True}
SMOKE_DATA = {"n_classes": 10, "n_train_per_class": 16, "n_val_per_class": 6, "seed": 0}
#: one change at a time from the baseline (a ResNet-18 shape, cosine decay); `depth` sets the arch's depth
ABLATIONS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "dropout 0.3": {"dropout": 0.3},
    "no batch norm": {"batch_norm": False},
    "no lr decay": {"schedule": "constant"},
    "no residual": {"residual": False},
    "ResNet-10": {"depth": 10},
    "ResNet-34": {"depth": 34},
}
#: He et al. (2016, Table 2 / Fig. 4): plain-18 and ResNet-18 end close; the residual gap appears at depth 34
#: (plain-34 worse than plain-18, ResNet-34 better than ResNet-18). The two pairs, same width and epochs.
DEPTH_PAIRS: dict[str, dict[str, Any]] = {
    "ResNet-18": {},
    "plain-18": {"residual": False},
    "ResNet-34": {"depth": 34},
    "plain-34": {"depth": 34, "residual": False},
}
#: the sets of variants `Config.ablations` chooses from; "all": the course's seven and plain-34
ABLATION_SETS: dict[str, dict[str, dict[str, Any]]] = {
    "course": ABLATIONS,
    "depth-pairs": DEPTH_PAIRS,
    "all": {**ABLATIONS, "plain-34": DEPTH_PAIRS["plain-34"]},
}


@dataclass(frozen=True)
class Config(LabConfig):
    """Lab 04's settings: the course's ResNet18 recipe (SGD 0.1, momentum 0.9, wd 5e-4, cosine)."""

    epochs: int = option(10, "total epochs", min=1)
    batch_size: int = option(128, "global batch size (under torchrun each process takes batch/N)", min=1)
    lr: float = option(0.1, "initial (peak for onecycle) learning rate", gt=0)
    weight_decay: float = option(5e-4, "weight decay (L2)", min=0)
    schedule: str = option("cosine", "learning-rate schedule: cosine (to 0 over the run), step (x gamma every "
                           "step-size epochs), onecycle (warm-up then cosine, per step) or constant (no decay)",
                           choices=SCHEDULES)
    pct_start: float = option(0.15, "onecycle: fraction of the steps spent warming up", gt=0, max=1)
    cycle_momentum: bool = option(False, "onecycle: cycle the momentum against the lr")
    at_epochs: tuple[int, ...] = option((5, 10), "also keep checkpoints of these epochs (epoch_005.pt, ...), "
                                        "e.g. to compare them", min=1)
    # the model
    arch: str = option("resnet18", "resnet18 = torchvision's (the course model); '-64' = 3x3 stem, no max-pool "
                       "(better at 64x64, ~15x the compute)", choices=ARCHS)
    width: int = option(64, "channels of the first stage (64: the standard ResNet)", min=1)
    dropout: float = option(0.0, "dropout before the classifier", min=0, max=0.99)
    batch_norm: bool = option(True, "batch norm after every convolution (--no-batch-norm: the ablation)")
    residual: bool = option(True, "shortcut connections (--no-residual: the plain CNN of the same shape)")
    pretrained: bool = option(False, "start from torchvision's ImageNet weights (plain resnet18 only; needs "
                              "internet once)")
    from_checkpoint: bool = option(False, "set when a config is read back from a checkpoint: the weights come "
                                   "from it, so no pretrained weights are fetched", cli=False)
    # the data
    train_per_class: int | None = option(None, "use only the first N train images of each class", min=1)
    val_per_class: int | None = option(None, "use only the first N val images of each class", min=1)
    # the notebook's ablations
    ablation_epochs: int = option(15, "epochs of each ablation variant", min=1, cli=False)
    ablation_width: int = option(64, "width of the ablation variants", min=1, cli=False)
    ablation_depth: int = option(18, "depth of the ablation baseline", choices=(10, 18, 34), cli=False)
    ablations: str = option("course", "which ablation variants: course (the seven one-change variants), "
                            "depth-pairs (plain vs residual at depths 18 and 34, as He et al. 2016) or all",
                            choices=tuple(ABLATION_SETS), cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pretrained and (self.model_options() or parse_arch(self.arch)[0] != 18):
            raise UsageError(f"--pretrained: ImageNet weights exist only for the standard ResNet18, not {self.arch} "
                             f"with {self.model_options() or 'this depth'}.")

    def model_options(self) -> dict[str, Any]:
        """The ResNet options that differ from the standard ResNet18 (none: torchvision's model)."""
        return {k: getattr(self, k) for k, default in MODEL_DEFAULTS.items() if getattr(self, k) != default}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Config:
        """A checkpoint's config: its model takes the checkpoint's weights, never fetched ImageNet ones."""
        return super().from_dict({**values, "from_checkpoint": True})  # type: ignore[return-value]


@register
class TinyImageNetLab(Lab):
    """Lab 04: a ResNet on Tiny-ImageNet-200; val top-1 picks best.pt (the test split has no labels)."""

    name = "tiny-imagenet"
    title = "Lab 04: ResNet18 on Tiny-ImageNet"
    Config = Config
    sizes: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"arch": "resnet10", "width": 8, "epochs": 3, "batch_size": 32, "at_epochs": (1, 2),
                  "ablation_epochs": 1, "ablation_width": 4},
        # the standard ResNet-18 (bf16 and channels_last on a CPU with native bf16) on 50 train images of each of
        # the 200 classes and all 10,000 val ones, for the companion report's 15 epochs (results/tiny-imagenet/
        # laptop/reference.json has the wall time); the ablations run width 8 for 4 epochs to keep the notebook short
        "laptop": {"train_per_class": 50, "epochs": 15, "at_epochs": (12, 15), "ablation_epochs": 4,
                   "ablation_width": 8},
        "full": {},
    }
    metrics = METRICS
    epoch_splits = ("val",)
    monitor = "val_accuracy"
    final_splits = ()  # val is the only labelled held-out split, and it picks best.pt: no separate test
    curve_keys = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "train_top5", "val_top5")
    unused_options = ("milestones", "warmup_steps", "warmup_epochs", "final_lr_fraction", "patience_lr")

    def load_data(self, cfg: Config, ctx: Any) -> LabData:
        """Train/val loaders over the decoded-once cache, on `ctx.device`, sharded by rank."""
        root = find_root(cfg)
        batch = per_rank_batch_size(cfg.batch_size, ctx.world_size)
        source = tiny.tiny_imagenet_loaders(
            root, batch_size=batch, device=ctx.device, seed=cfg.seed, train_per_class=cfg.train_per_class,
            val_per_class=cfg.val_per_class, rank=ctx.rank, world_size=ctx.world_size,
            verbose=ctx.is_main_process)
        generated = cfg.size == "smoke" and cfg.data is None
        n_train, n_val = len(source.train.tensors[0]), len(source.val_files)
        description = (f"Tiny-ImageNet at {root}: {n_train:,} train / {n_val:,} val images, {source.num_classes} "
                       f"classes" + (" (generated smoke data in the official layout)" if generated else "")
                       + (f"; first {cfg.train_per_class} train images per class" if cfg.train_per_class else "")
                       + (f"; first {cfg.val_per_class} val images per class" if cfg.val_per_class else "")
                       + "; val is the labelled hold-out and picks best.pt (the test split has no labels)")
        return LabData(train=source.train, eval={"val": source.val}, source=source, description=description,
                       info={"num_classes": source.num_classes, "class_names": list(source.class_names),
                             "wnids": list(source.classes)})

    def build_model(self, cfg: Config, info: Mapping[str, Any]) -> nn.Module:
        if "num_classes" not in info:
            raise CheckpointError("the run has no num_classes in its model_info: it was not written by labkit's "
                                  "tiny-imagenet lab on the runner, so its model cannot be rebuilt.")
        pretrained = cfg.pretrained and not cfg.from_checkpoint
        return build_model(cfg.arch, num_classes=int(info["num_classes"]), pretrained=pretrained,
                           **cfg.model_options())

    def graph_input(self, cfg: Config, data: LabData) -> torch.Tensor:
        return torch.zeros(1, 3, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, device=data.train.device)

    def report(self, run: runner.Run) -> dict[str, Any]:
        """The per-epoch table and the best epoch; what a diverged or cut-short run lacks is skipped, saying why."""
        history = run.history
        if not len(history):
            print("no epoch completed (stopped inside the first): no table, no best epoch")
            return {}
        keys = [k for k in ("train_loss", "train_top5", "val_loss", "val_accuracy", "val_top5") if k in history]
        whole = [k for k in keys if len(history[k]) == len(history)]
        print(history.table(whole))
        if len(whole) < len(keys):
            print(f"not in the table: {', '.join(sorted(set(keys) - set(whole)))} (not measured every epoch"
                  + ("; the run diverged)" if history.diverged else ")"))
        finite = "val_accuracy" in history and any(math.isfinite(v) for v in history["val_accuracy"])
        if not finite:
            print("no finite val top-1: no best epoch" + (" (the run diverged)" if history.diverged else ""))
            return {}
        epoch, best = history.best("val_accuracy")
        top5 = history["val_top5"][epoch - 1]
        where = f"; checkpoints, curves and TensorBoard logs under {run.out_dir}/" if run.out_dir else ""
        print(f"best val top-1 {100 * best:.2f} % (top-5 {100 * top5:.2f} %) at epoch {epoch} of "
              f"{history.epoch[-1]}" + where)
        return {"best_epoch_val_top5": top5, "best_epoch_val_loss": history["val_loss"][epoch - 1]}

    def reference(self, size: str, out_dir: Path) -> dict[str, dict[str, Any]]:
        """`labkit reproduce tiny-imagenet`: the default run into `out_dir/default/` (the val figures of its
        last epoch and its training speed beside the summary), then every ablation variant
        (`ablations="all"`: the course's seven and plain-34) into `out_dir/ablation/`, then with two more seeds."""
        cfg = self.config(size, out=str(Path(out_dir) / "default"))
        data = runner.load_data(self, cfg)
        run = runner.run(self, cfg, data=data)
        summary = {**run.summary(), **self.report(run)}
        record = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        history = run.history
        record["final_val_accuracy"] = history.last("val_accuracy")
        record["final_val_top5"] = history.last("val_top5")
        images = len(data.train.tensors[0]) * len(history)
        record["train_images_per_s"] = round(images / sum(history.seconds), 1)  # evaluation included
        runs = {"default": record}
        ablation = run_ablations(cfg.replace(ablations="all"), data, out_dir=Path(out_dir) / "ablation")
        for row in ablation.rows():
            runs[f"ablation: {row['variant']}"] = {
                "best_val_accuracy": row["best_val_accuracy"], "final_val_accuracy": row["final_val_accuracy"],
                "final_train_accuracy": row["final_train_accuracy"], "epochs": row["epochs"],
                "seconds": round(row["seconds"], 1), **({"diverged": True} if row["diverged"] else {})}
        # a ranking stands on seeds: every variant twice more (best val top-1 min/median/max of the three)
        more = int(os.environ.get("LABKIT_REFERENCE_SEEDS", "3")) - 1  # 1: one seed (the spread is not recorded)
        seeded = [ablation] + [run_ablations(cfg.replace(ablations="all", seed=cfg.seed + k), data)
                               for k in range(1, more + 1)]
        for row in ablation.rows():
            values = sorted(round(r["best_val_accuracy"], 4) for result in seeded for r in result.rows()
                            if r["variant"] == row["variant"])
            if len(values) >= 3:
                runs[f"ablation: {row['variant']}"].update(best_val_accuracy_min=values[0],
                                                          best_val_accuracy_median=values[len(values) // 2],
                                                          best_val_accuracy_max=values[-1])
        return runs

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--evaluate", action="store_true",
                            help="only evaluate the --resume checkpoint on val (no training)")

    def main(self, cfg: Config, args: argparse.Namespace) -> dict[str, Any] | None:
        if not getattr(args, "evaluate", False):
            if getattr(args, "resume", None) is not None:  # training on from other classes would mislabel them
                root = find_root(cfg)
                _check_classes(args.resume, load_checkpoint(args.resume).config.get("model_info") or {},
                               tiny.read_wnids(root), root)
            return None  # the runner's default: one run, then report
        if args.resume is None:
            raise UsageError("--evaluate needs the checkpoint to evaluate: --resume CKPT --evaluate")
        result = evaluate_checkpoint(args.resume, cfg=cfg)
        print(f"{args.resume}: val loss {result['loss']:.4f}, top-1 {100 * result['accuracy']:.2f} %, "
              f"top-5 {100 * result['top5']:.2f} %")
        return {"checkpoint": str(args.resume), **{f"val_{k}": v for k, v in result.items()}}

    def smoke(self, out_dir: Path) -> dict[str, Any]:
        """Train at smoke size with checkpoints, evaluate best.pt, compare epochs 1 and 2."""
        cfg = self.config("smoke", out=str(out_dir), tensorboard=False)
        data = runner.load_data(self, cfg)
        run = runner.run(self, cfg, data=data, progress=False)
        evaluated = evaluate_checkpoint(run.best_checkpoint, data)
        ckpts = run.checkpoint_dir
        compared = compare_checkpoints(ckpts / "epoch_001.pt", ckpts / "epoch_002.pt", data, Path(out_dir) / "compare")
        return {**run.summary(), **self.report(run), "best_ckpt_val_accuracy": evaluated["accuracy"],
                "disagreements": len(compared.rows)}


LAB = TinyImageNetLab()


# --- data ----------------------------------------------------------------------------------------

def smoke_data_root() -> Path:
    """The generated Tiny-ImageNet of smoke runs, written on first use under the cache (never into LABKIT_DATA,
    which a course server may mount read-only)."""
    base = config.cache_dir() / "synthetic" / "tiny-imagenet"
    if not (base / tiny.FOLDER / "val" / "val_annotations.txt").is_file():
        tiny.write_synthetic_tiny_imagenet(base, **SMOKE_DATA)
    return base / tiny.FOLDER


def find_root(cfg: Config) -> Path:
    """The data set a run uses: `cfg.data` if given; at smoke size the generated one; else
    `$LABKIT_DATA/tiny-imagenet-200`, else the read-only `../shared/datasets/tiny-imagenet-200`."""
    if cfg.data is not None:
        return tiny.resolve_root(cfg.data)
    if cfg.size == "smoke":
        return smoke_data_root()
    own = config.data_root() / tiny.FOLDER
    shared = config.shared_datasets()
    if not own.exists() and shared is not None and (shared / tiny.FOLDER / "wnids.txt").is_file():
        return shared / tiny.FOLDER
    return tiny.resolve_root(own)


def load_tiny_run(checkpoint: str | os.PathLike, device: str | torch.device | None = "cpu") -> runner.Run:
    """The model of a tiny-imagenet checkpoint, rebuilt from the checkpoint alone (`runner.load_run`)."""
    try:
        run = runner.load_run(checkpoint, device)
    except UsageError as err:  # the checkpoint names a lab labkit does not know
        raise CheckpointError(f"{checkpoint} was not written by labkit's tiny-imagenet lab: {err}") from None
    if run.lab != LAB.name:
        raise CheckpointError(f"{checkpoint} was written by the {run.lab} lab, not by labkit's tiny-imagenet lab: "
                              "use that lab's tools for it.")
    return run


def _check_classes(name: str | os.PathLike, info: Mapping[str, Any], wnids: Sequence[str], root: Path) -> None:
    """Refuse a checkpoint trained on other classes than the data at `root` (its scores would be mislabelled)."""
    saved = list(info.get("wnids") or [])
    count = int(info.get("num_classes", len(saved)))
    if count == len(wnids) and (not saved or saved == list(wnids)):
        return
    fix = (" Its predictions would be scored against the wrong labels: use the data set it was trained on "
           "(--data PATH, the tiny-imagenet-200 folder of its run).")
    if not saved:
        raise CheckpointError(f"{name} predicts {count} classes but the data at {root} have {len(wnids)}.{fix}")
    only_ckpt, only_data = sorted(set(saved) - set(wnids)), sorted(set(wnids) - set(saved))
    differ = next((i for i, (a, b) in enumerate(zip(saved, wnids)) if a != b), None)
    detail = f"its class {differ} is {saved[differ]}, the data's is {wnids[differ]}; " if differ is not None else ""
    detail += (f"{len(only_ckpt)} of its {len(saved)} classes are not in the data ({', '.join(only_ckpt[:3]) or '-'}"
               f"{', ...' if len(only_ckpt) > 3 else ''}) and {len(only_data)} of the data's {len(wnids)} are not "
               f"among its own ({', '.join(only_data[:3]) or '-'}{', ...' if len(only_data) > 3 else ''})"
               if only_ckpt or only_data else "the same classes in another order")
    raise CheckpointError(f"{name} was trained on other classes than the data at {root}: {detail}.{fix}")


def evaluate_checkpoint(checkpoint: str | os.PathLike, data: LabData | None = None, *,
                        cfg: Config | None = None) -> dict[str, float]:
    """Val loss, top-1 and top-5 of a checkpoint without training (PyTorch's example's --evaluate).

    The model comes from the checkpoint alone; the data are `data`, else those of `cfg`, else those
    of the checkpoint's own config.
    """
    run = load_tiny_run(checkpoint)
    cfg = cfg or run.config
    data = data if data is not None else runner.load_data(LAB, cfg)  # the device is decided there, once
    _check_classes(checkpoint, run.info, data.info["wnids"], data.source.root)
    val = data.eval["val"]
    run.model.to(val.device)
    return evaluate(run.model, val, metrics=METRICS, device=val.device, amp=cfg.amp, channels_last=cfg.channels_last,
                    progress=None, desc="val")


# --- comparing two checkpoints -------------------------------------------------------------------------

@dataclass
class Comparison:
    """Where two checkpoints disagree on val: the rows, and the CSV and image grid written."""

    rows: list[Any]
    csv: Path
    grid: Path
    accuracy_a: float
    accuracy_b: float
    total: int


def compare_runs(run_a: runner.Run, run_b: runner.Run, data: LabData, out_dir: str | os.PathLike,
                 max_images: int = 16, labels: tuple[str, str] = ("A", "B")) -> Comparison:
    """Predict val with both models; write `disagreements.csv` and `disagreements.png` to `out_dir`."""
    from labkit.labs.tiny_imagenet import compare

    source, val = data.source, data.eval["val"]
    predicted = []
    for label, run in zip(labels, (run_a, run_b)):
        _check_classes(label, run.info, data.info["wnids"], source.root)
        outputs, targets = predict(run.model.to(val.device), val, device=val.device, amp=run.config.amp,
                                   channels_last=run.config.channels_last)
        predicted.append(outputs.argmax(1))
    everything = compare.compare_predictions(*predicted, targets, source.class_names, source.val_files,
                                             only_disagreements=False)
    rows = [row for row in everything if row.disagree]
    out_dir = Path(out_dir)
    csv_path = compare.save_rows_csv(rows, out_dir / "disagreements.csv")
    compare.plot_disagreements(rows, source.val_images, path=out_dir / "disagreements.png", max_images=max_images,
                               labels=labels)
    total = len(everything)
    return Comparison(rows, csv_path, out_dir / "disagreements.png", sum(r.correct_a for r in everything) / total,
                      sum(r.correct_b for r in everything) / total, total)


def compare_checkpoints(ckpt_a: str | os.PathLike, ckpt_b: str | os.PathLike, data: LabData,
                        out_dir: str | os.PathLike, max_images: int = 16) -> Comparison:
    """`compare_runs` of two checkpoints, each rebuilt from its own file (read once)."""
    runs = [load_tiny_run(path, data.eval["val"].device) for path in (ckpt_a, ckpt_b)]
    return compare_runs(*runs, data, out_dir, max_images, labels=(Path(ckpt_a).stem, Path(ckpt_b).stem))


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ckpt_a", type=Path, help="first checkpoint (e.g. .../epoch_005.pt)")
    parser.add_argument("ckpt_b", type=Path, help="second checkpoint (e.g. .../epoch_010.pt)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the tiny-imagenet-200 folder (default: the one the first checkpoint was trained on)")
    parser.add_argument("--val-per-class", type=int, default=None, help="compare on the first N val images per class")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/tiny-imagenet-compare)")
    parser.add_argument("--max-images", type=int, default=16, help="images in the grid")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the best available)")


def compare_main(args: argparse.Namespace) -> dict[str, Any]:
    """`labkit compare A.pt B.pt`: the models and the data set come from the checkpoints' own configs."""
    if args.max_images < 1:
        raise UsageError(f"--max-images must be at least 1, got {args.max_images}.")
    out = runner.writable_folder(args.out or config.runs_dir() / "tiny-imagenet-compare")
    run_a, run_b = load_tiny_run(args.ckpt_a), load_tiny_run(args.ckpt_b)
    given = {"data": str(args.data) if args.data else None, "val_per_class": args.val_per_class, "device": args.device}
    cfg = run_a.config.replace(**{k: v for k, v in given.items() if v is not None})
    try:
        data = runner.load_data(LAB, cfg)
    except DataError as err:
        if cfg.data is not None:
            raise
        raise DataError(
            f"{err} {args.ckpt_a.name} was trained on the default data folder, which is not here: pass "
            "--data PATH, the tiny-imagenet-200 folder the checkpoints were trained on.") from None
    result = compare_runs(run_a, run_b, data, out, args.max_images, labels=(args.ckpt_a.stem, args.ckpt_b.stem))
    print(f"{len(result.rows)} of {result.total} val images are predicted differently; "
          f"top-1 {100 * result.accuracy_a:.2f} % ({args.ckpt_a.name}) vs {100 * result.accuracy_b:.2f} % "
          f"({args.ckpt_b.name}) · {data.description}")
    for row in result.rows[:10]:
        print(f"  {row.image}: true {row.true_class!r}, A {row.prediction_a!r}, B {row.prediction_b!r}")
    print(f"table: {result.csv}\nimage grid: {result.grid}")
    return {"disagreements": len(result.rows), "total": result.total, "accuracy_a": result.accuracy_a,
            "accuracy_b": result.accuracy_b, "csv": str(result.csv), "grid": str(result.grid)}


# --- ablations ---------------------------------------------------------------------------------------------

def ablation_config(cfg: Config, settings: Mapping[str, Any]) -> Config:
    """The config of one ablation variant: `cfg` at the ablation epochs/width/depth, then `settings`
    (config fields, and `depth` for the arch's depth with the same stem)."""
    settings = dict(settings)
    depth = int(settings.pop("depth", cfg.ablation_depth))
    stem = "-64" if cfg.arch.endswith("-64") else ""
    base = {"epochs": cfg.ablation_epochs, "width": cfg.ablation_width, "arch": f"resnet{depth}{stem}"}
    return cfg.replace(**{**base, **settings})  # type: ignore[return-value]


def run_ablations(cfg: Config, data: LabData | None = None,
                  variants: Mapping[str, Mapping[str, Any]] | None = None, *,
                  out_dir: str | os.PathLike | None = None, progress: bool | None = False):
    """Train each variant (`ABLATION_SETS[cfg.ablations]` by default; see `ablation_config`) through the runner with
    `ablation.run_ablation`; returns its `AblationResult` (table + curves, written to `out_dir`)."""
    from labkit.labs.tiny_imagenet.ablation import run_ablation

    data = data if data is not None else runner.load_data(LAB, cfg)

    def run_one(name: str, settings: dict[str, Any]):
        variant = ablation_config(cfg, settings)
        return runner.run(LAB, variant, data=data, progress=progress, write_files=False, checkpoints=False).history

    return run_ablation(variants if variants is not None else ABLATION_SETS[cfg.ablations], run_one, metric="accuracy",
                        curve_keys=("val_accuracy", "train_accuracy", "val_top5"), out_dir=out_dir)



# --- the layer table ---------------------------------------------------------------------------------------

def resnet_layer_table(model: nn.Module, image_size: int = tiny.IMAGE_SIZE):
    """Every layer of `model` for one (3, image_size, image_size) input: each convolution, batch norm,
    ReLU, block, stage, pooling and the head, with its output shape and parameters
    (`labkit.summary.layer_table` at every depth, so stages and the layers inside them both show)."""
    from labkit.summary import layer_table

    if image_size < 1:
        raise LabkitError(f"resnet_layer_table: image_size must be a positive number of pixels, got {image_size}.")
    return layer_table(model, (3, image_size, image_size))


# --- TensorBoard in the notebook -------------------------------------------------------------------------

def headless_reason() -> str | None:
    """Why TensorBoard cannot be shown inline here (None: it can)."""
    if os.environ.get("LABKIT_HEADLESS"):
        return "LABKIT_HEADLESS is set"
    from labkit.plots import in_notebook

    if not in_notebook():
        return "not in a notebook"
    smoke = os.environ.get("LABKIT_SMOKE") == "1"  # nbval's kernels inherit it
    return "a test run (LABKIT_SMOKE=1: no TensorBoard server under nbval)" if smoke else None


def show_tensorboard(log_dir: str | os.PathLike, port: int | None = None) -> bool:
    """TensorBoard inside the notebook (`%tensorboard --logdir log_dir`); where `headless_reason` says it cannot,
    one line saying why and the command to run instead. True when started."""
    if (reason := headless_reason()) is not None:
        print(f"TensorBoard not shown inline ({reason}); view the logs with: tensorboard --logdir {log_dir}")
        return False
    from IPython import get_ipython

    shell = get_ipython()
    shell.run_line_magic("load_ext", "tensorboard")
    shell.run_line_magic("tensorboard", f"--logdir {log_dir}" + (f" --port {port}" if port else ""))
    return True


# --- resuming a run for more epochs ------------------------------------------------------------------------

@dataclass(frozen=True)
class ResumePlan:
    """Where a resume starts (`checkpoint`, after `done` epochs) and how far it trains (`epochs` = done + k)."""

    checkpoint: Path
    done: int
    epochs: int

    @property
    def more(self) -> int:
        return self.epochs - self.done


def resume_plan(run: runner.Run, extra: int | None = None) -> ResumePlan:
    """A resume of `run` that trains further: from its earliest kept `epoch_NNN.pt` before the run's
    end, for `epochs = done + k` with k the epochs the run trained after it (a cosine or one-cycle
    schedule fixes the length: `extra` epochs beyond the planned end need a step or constant schedule)."""
    if run.checkpoint_dir is None or not run.checkpoint_dir.is_dir():
        raise LabkitError("resume_plan: the run kept no checkpoints (train it with checkpoints=True).")
    trained = run.history.epoch[-1] if len(run.history) else 0
    kept = sorted(int(p.stem.split("_")[1]) for p in run.checkpoint_dir.glob("epoch_*.pt"))
    before = [e for e in kept if e < trained]
    if before:
        path, done = run.checkpoint_dir / f"epoch_{before[0]:03d}.pt", before[0]
    else:  # no earlier epoch kept: continue from the end (possible only where the schedule may grow)
        path = run.checkpoint_dir / "last.pt"
        done = int(load_checkpoint(path).epoch)
    planned = run.config.epochs
    epochs = done + extra if extra is not None else planned
    if epochs <= done:
        raise LabkitError(f"resume_plan: the checkpoint {path.name} is at epoch {done}; resuming it with "
                          f"epochs={epochs} would train nothing. Pass extra=k > 0 (epochs = {done} + k).")
    if epochs != planned and run.config.schedule in LENGTH_SHAPED_SCHEDULES:
        raise LabkitError(f"resume_plan: a {run.config.schedule} schedule is planned for {planned} epochs; "
                          f"resuming for {epochs} would bend it. Use extra={planned - done} (to the planned end), "
                          "or a run with --schedule step or constant to train beyond it.")
    return ResumePlan(path, done, epochs)


def resume_further(run: runner.Run, data: LabData, out: str | os.PathLike, extra: int | None = None,
                   **options: Any) -> tuple[ResumePlan, runner.Run]:
    """Resume `run` per `resume_plan` into `out`: trains epochs done+1 .. done+k and returns both."""
    plan = resume_plan(run, extra)
    cfg = run.config.replace(out=str(out), epochs=plan.epochs, tensorboard=False)
    return plan, runner.run(LAB, cfg, data=data, resume=plan.checkpoint, **options)


# --- TensorBoard: mistakes and precision-recall curves ------------------------------------------------------

def write_tensorboard_extras(run: runner.Run, data: LabData, log_dir: str | os.PathLike, *,
                             max_images: int = 16, pr_classes: int = 5) -> dict[str, Any]:
    """Write val mistakes (images with their wrong prediction) and precision-recall curves to TensorBoard,
    as PyTorch's TensorBoard tutorial does (`add_images`, `add_pr_curve`).

    PR curves: one per class for the `pr_classes` classes with the most val images (one class against the
    rest, scored by its softmax probability), and one over all classes together. Returns the tags written
    and what they hold."""
    from torch.utils.tensorboard import SummaryWriter

    if max_images < 1 or pr_classes < 1:
        raise LabkitError(f"write_tensorboard_extras: max_images and pr_classes must be at least 1, got "
                          f"{max_images} and {pr_classes}.")
    source, val = data.source, data.eval["val"]
    outputs, targets = predict(run.model.to(val.device), val, device=val.device, amp=run.config.amp,
                               channels_last=run.config.channels_last)
    probs = outputs.softmax(1)
    predicted = probs.argmax(1)
    wrong = (predicted != targets).nonzero().flatten()
    names = list(source.class_names)
    writer = SummaryWriter(log_dir=str(log_dir))
    tags: dict[str, Any] = {}
    try:
        shown = wrong[:max_images]
        if len(shown):
            writer.add_images("val mistakes", source.val_images[shown], dataformats="NCHW")
            lines = [f"{i + 1}. true **{names[targets[j]]}**, predicted **{names[predicted[j]]}** "
                     f"(p = {probs[j, predicted[j]]:.2f})" for i, j in enumerate(shown.tolist())]
            writer.add_text("val mistakes", "  \n".join(lines))
            tags["val mistakes"] = len(shown)
        counts = torch.bincount(targets, minlength=len(names))
        for c in counts.argsort(descending=True, stable=True)[:pr_classes].tolist():
            tag = f"pr/{names[c]}"
            writer.add_pr_curve(tag, (targets == c).int(), probs[:, c], global_step=run.chosen_epoch)
            tags[tag] = int(counts[c])
        onehot = torch.nn.functional.one_hot(targets, len(names)).flatten()
        writer.add_pr_curve("pr/all classes", onehot.int(), probs.flatten(), global_step=run.chosen_epoch)
        tags["pr/all classes"] = len(targets)
    finally:
        writer.close()
    return {"tags": tags, "mistakes": len(wrong), "total": len(targets), "log_dir": str(log_dir)}


TinyImageNetLab.commands = {"compare": (add_compare_arguments, compare_main,
                                        "compare two checkpoints' predictions image by image")}
