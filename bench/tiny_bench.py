"""Tiny-ImageNet, CPU: labkit's pipeline and training loop against PyTorch's ImageNet example (tooling), and
Lab 04's default recipe against the example's (recipe); plus the real-subset label-mapping check.

Data: the real subset in ../shared/datasets/tiny-imagenet-200 (or $LABKIT_DATA/tiny-imagenet-200; all 200
classes, the first 50 train images of each and the whole 10,000-image val split), else synthetic JPEGs
written in the official layout (numbers for correctness only).

Reference pipeline (built like PyTorch's ImageNet example at Tiny-ImageNet's native 64×64, in this process):
`ImageFolder(train/)` with `Compose([RandomCrop(64, padding=4), RandomHorizontalFlip(), ToTensor(),
Normalize(ImageNet mean/std)])` served by `DataLoader(batch_size=128, shuffle=True, num_workers=2)`; val
through `ImageFolder` on a reorganised val folder of symlinks built in a temp dir; a plain training loop.
labkit: every JPEG decoded once into a uint8 tensor cache (built fresh here, in a temp cache dir, so its
one-off cost is measured), served by `TensorLoader` with the crop, flip and normalisation done on whole
batches (`labkit.labs.tiny_imagenet.data.tiny_imagenet_loaders`), trained by `labkit.engine.fit`.

Two questions, two figures (> 1 means labkit better, everywhere):
  1. tooling — the same work: torchvision's resnet18 (200 classes), the example's recipe (SGD lr 0.1,
     momentum 0.9, weight decay 1e-4), batch 128, CPU, through the reference pipeline and loop and
     through labkit's (`throughput.TrainingTimer` against `FitTimer`), both at the CPU's best settings
     (`fast_math`: channels_last, and bf16 autocast where the CPU runs it natively, else fp32). The sides
     alternate in rounds (`throughput.alternate`, the order reversed every other round) with equal numbers of batches;
     images/s per round, min/median/max, ratio of medians. The same for the pipeline alone (augmented,
     normalised train batches, no model; val batches too). The reference's DataLoader workers keep
     prefetching (up to 2 batches each) while labkit's rounds run, which favours the reference.
     `tooling_ratio` is the end-to-end training figure, `pipeline_ratio` the train pipeline alone.
  2. recipe — each side's default, everything else equal: Lab 04's default (SGD lr 0.1, momentum 0.9,
     weight decay 5e-4, cosine decay to 0 over the run) against the example's (SGD lr 0.1, momentum 0.9,
     weight decay 1e-4, lr x0.1 every 30 epochs, so constant within the run), both at the course's batch 128
     with the same augmentation, model and pipeline (the lab's runner, `labkit.runner`), the same number
     of epochs, `--seeds` seeds each (a seed gives both sides the same initial weights and batch order;
     the side that goes first alternates). At a size that fits a CPU: the first `--recipe-classes` classes
     (sorted wnids; 40 by default, so 2,000 train and 2,000 val images of the real subset), the lab's
     laptop-size model (ResNet-18 of width 16), `--recipe-epochs` epochs. Val top-1 is read once per run,
     after its last epoch (no per-epoch evaluation, no best-epoch pick); `recipe_ratio` = median labkit
     top-1 / median reference top-1.
What was tuned on what: nothing, here or on val. Lab 04's recipe was set when the lab was written (commit
85a23de) from the course's ResNet18 recipe, not searched on any split of these data; the reference's is the
example's own (its `main.py` defaults) at the course's batch size. Val is the only labelled held-out split
of Tiny-ImageNet (the test split has no labels), so it chose nothing: it is only read for the figures.

Also measured: the one-off cache build (decode every train and val JPEG) and a cache reload; and, with the
real subset, the label-mapping check — a CPU run of at most 10 minutes (cache build included) of the lab's
narrow ResNet-10 on the first 50 train and 50 val images of every class (bounded on the full 100,000-image
set too; it reuses the cache) must reach val top-5 >= 7.5 % (3x chance).

    OMP_NUM_THREADS=1 python bench/tiny_bench.py    # all of it (8 min on one core of a busy 2-core CPU, real subset)
    python bench/tiny_bench.py --quick              # a fast correctness run (no 10-minute check unless --check)

Last line: `RESULT tooling_ratio=<x> recipe_ratio=<x or na> pipeline_ratio=<x> val_top1=<labkit median %>
ref_val_top1=<reference median %> val_top5=<the check's %, or na> label_check=<PASS, FAIL or na>
peak_fraction=<x> precision=<fp32|bf16> matmul_fp32_gflops=<x> matmul_bf16_gflops=<x or na>`: `peak_fraction` is
labkit's training FLOP/s (images/s × the FLOPs of one training step per image, counted by `FlopCounterMode`)
over the CPU's 2048×2048 matmul FLOP/s in the precision it trained in, measured in the same run
(`throughput.matmul_flops`, `--peak-seconds` per precision).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # run from a checkout without installing labkit
    sys.path.insert(0, str(_REPO))
sys.path.insert(0, str(_REPO / "bench"))  # bench/throughput.py

import torch
from throughput import (
    FitTimer,
    LoaderTimer,
    TrainingTimer,
    alternate,
    markdown_table,
    matmul_flops,
    matmul_text,
    peak_fraction,
    precision_name,
    spread_text,
    training_flops,
)

from labkit import config
from labkit.device import amp_dtype, describe_precision
from labkit.labs.tiny_imagenet import data as tiny

#: the label-mapping check: model and recipe, and its limits
CHECK = {"arch": "resnet10", "width": 32, "epochs": 4, "lr": 0.2, "schedule": "onecycle", "batch_size": 128,
         "train_per_class": 50, "val_per_class": 50}
CHECK_SECONDS = 600.0
CHECK_TARGET = 0.075
SHAPE = (3, 64, 64)  # what both pipelines deliver: augmented, normalised float images


# --- data -------------------------------------------------------------------------------------------------

def find_real_subset() -> Path | None:
    """The real Tiny-ImageNet folder ($LABKIT_DATA, then ../shared/datasets), or None."""
    candidates = [config.data_root() / tiny.FOLDER]
    shared = config.shared_datasets()
    if shared is not None:
        candidates.append(shared / tiny.FOLDER)
    return next((c for c in candidates if (c / "wnids.txt").is_file()), None)


def reference_loaders(root: Path, val_folder: Path, workers: int, batch_size: int) -> tuple[Iterable, Iterable]:
    """ImageFolder + DataLoader, transforms as in PyTorch's ImageNet example at 64×64."""
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    normalize = T.Normalize(tiny.MEAN, tiny.STD)
    train_tf = T.Compose([T.RandomCrop(64, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    val_tf = T.Compose([T.ToTensor(), normalize])
    train, val = tiny.imagefolder_datasets(root, val_folder, train_tf, val_tf)
    return (DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=workers,
                       persistent_workers=workers > 0),
            DataLoader(val, batch_size=batch_size, shuffle=False, num_workers=workers,
                       persistent_workers=workers > 0))


#: the example's recipe (its main.py defaults: lr 0.1, momentum 0.9, weight decay 1e-4, lr x0.1 every 30 epochs)
REFERENCE_RECIPE = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step", "step_size": 30,
                    "gamma": 0.1}


def resnet18_timer(kind: type[TrainingTimer], loader: Iterable, num_classes: int) -> TrainingTimer:
    """The course model (torchvision resnet18, seed 0) with the example's SGD, fed by one loader and timed by
    `kind`: `TrainingTimer` (a plain loop, the reference) or `FitTimer` (`labkit.engine.fit`), both at the
    CPU's best settings (`fast_math`: channels_last, bf16 autocast where native)."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(num_classes=num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=REFERENCE_RECIPE["lr"], momentum=REFERENCE_RECIPE["momentum"],
                                weight_decay=REFERENCE_RECIPE["weight_decay"])
    return kind(model, optimizer, loader, fast_math=True)


def resnet18_flops(batch: int, num_classes: int) -> float:
    """FLOPs per training image of the course ResNet18 at 64x64 (one forward + backward at `batch`)."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    images, labels = torch.randn(batch, *SHAPE), torch.randint(0, num_classes, (batch,))
    return training_flops(resnet18(num_classes=num_classes), images, labels) / batch


# --- recipe: Lab 04's default against the example's ---------------------------------------------------------

def first_classes(images: torch.Tensor, labels: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of classes 0 .. `classes` - 1 (the first sorted wnids); labels unchanged (they are < classes)."""
    keep = labels < classes
    return images[keep], labels[keep]


def recipe_run(side: str, seed: int, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
               classes: int, epochs: int, width: int, batch_size: int = 128) -> dict:
    """One run of a side's recipe ("labkit": Lab 04's default; "reference": the example's) through the lab's
    runner on the given uint8 tensors; val top-1/top-5 read once, after the last epoch."""
    from labkit import runner
    from labkit.data.tensor_loader import TensorLoader
    from labkit.engine import evaluate
    from labkit.lab import LabData
    from labkit.labs import tiny_imagenet as lab

    overrides = REFERENCE_RECIPE if side == "reference" else {}
    cfg = lab.LAB.config("full", device="cpu", tensorboard=False, seed=seed, epochs=epochs, width=width,
                         batch_size=batch_size, **overrides)
    loader = TensorLoader(*train, batch_size=batch_size, shuffle=True, seed=seed, transform=tiny.train_transform())
    data = LabData(train=loader, info={"num_classes": classes}, description=f"first {classes} classes")
    start = time.perf_counter()
    run = runner.run(lab.LAB, cfg, data=data, progress=False, write_files=False, checkpoints=False, epoch_splits=(),
                     estimate=False)
    seconds = time.perf_counter() - start
    val_loader = TensorLoader(*val, batch_size=256, transform=tiny.eval_transform())
    result = evaluate(run.model, val_loader, metrics=("accuracy", "top5"), device="cpu")
    return {"side": side, "seed": seed, "top1": float(result["accuracy"]), "top5": float(result["top5"]),
            "train_loss": run.history.last("train_loss"), "seconds": seconds, "epochs": len(run.history)}


def recipe_runs(seeds: list[int], **kwargs) -> dict[str, list[dict]]:
    """Both recipes for every seed, the side that goes first alternating (reference first for the first seed)."""
    runs: dict[str, list[dict]] = {"reference": [], "labkit": []}
    for i, seed in enumerate(seeds):
        for side in (("reference", "labkit") if i % 2 == 0 else ("labkit", "reference")):
            result = recipe_run(side, seed, **kwargs)
            runs[side].append(result)
            print(f"  recipe {side} seed {seed}: val top-1 {100 * result['top1']:.2f} %, top-5 "
                  f"{100 * result['top5']:.2f} %, {result['seconds']:.0f} s", flush=True)
    return runs


def label_mapping_check(root: Path, cache_dir: Path, seconds: float = CHECK_SECONDS) -> dict:
    """Train the lab's check model on `root` within `seconds` (cache build included); val top-1/top-5."""
    from labkit import runner
    from labkit.labs import tiny_imagenet as lab

    start = time.perf_counter()
    cfg = lab.LAB.config("full", data=str(root), device="cpu", tensorboard=False, **CHECK)
    with _cache_in(cache_dir):
        data = runner.load_data(lab.LAB, cfg)
    prepared = time.perf_counter() - start
    run = runner.run(lab.LAB, cfg.replace(time_budget=max(seconds - prepared - 5.0, 1.0)), data=data, progress=False,
                     write_files=False, checkpoints=False)
    history = run.history
    return {"val_top5": history.last("val_top5"), "val_accuracy": history.last("val_accuracy"),
            "train_top5": history.last("train_top5"), "epochs": history.epoch[-1],
            "seconds": time.perf_counter() - start, "prepare_seconds": prepared,
            "stop_reason": history.stop_reason}


@contextlib.contextmanager
def _cache_in(folder: Path) -> Iterator[None]:
    """Point LABKIT_DATA and LABKIT_CACHE (so the decoded-image cache) at `folder` for a block."""
    saved = {name: os.environ.get(name) for name in ("LABKIT_DATA", "LABKIT_CACHE")}
    os.environ["LABKIT_DATA"] = str(folder)
    os.environ["LABKIT_CACHE"] = str(Path(folder) / "cache")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- report -----------------------------------------------------------------------------------------------

def _speeds(timer) -> list[float]:
    return [r.images_per_s for r in timer.rounds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few batches, steps and epochs: a correctness run")
    parser.add_argument("--data", type=Path, default=None, help="a tiny-imagenet-200 folder (default: found)")
    parser.add_argument("--synthetic-classes", type=int, default=200, help="classes of synthetic data (no real data)")
    parser.add_argument("--synthetic-per-class", type=int, default=50, help="train images per synthetic class")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers (default 2)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds of the tooling figures (4)")
    parser.add_argument("--pipeline-batches", type=int, default=None,
                        help="timed batches per side for each pipeline-alone figure (default 80)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per side (default 16)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per side for the recipe figure (default 3)")
    parser.add_argument("--recipe-classes", type=int, default=40, help="classes of the recipe runs (default 40)")
    parser.add_argument("--recipe-epochs", type=int, default=None, help="epochs of each recipe run (default 8)")
    parser.add_argument("--recipe-width", type=int, default=None, help="ResNet-18 width of the recipe runs (16)")
    parser.add_argument("--no-recipe", action="store_true", help="skip the recipe figure")
    parser.add_argument("--check", action="store_true", help="run the 10-minute real-data check even with --quick")
    parser.add_argument("--no-check", action="store_true", help="skip the 10-minute real-data check")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of this process")
    parser.add_argument("--peak-seconds", type=float, default=None,
                        help="seconds of 2048x2048 matmuls per precision (default 1.5; 0.3 with --quick)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 4)
    pipe_batches = args.pipeline_batches or (2 * rounds if args.quick else 80)
    steps = args.steps or (rounds if args.quick else 16)
    recipe_epochs = args.recipe_epochs or (1 if args.quick else 8)
    recipe_width = args.recipe_width or (4 if args.quick else 16)
    if rounds < 1 or pipe_batches < rounds or steps < rounds:
        parser.error("--rounds must be at least 1, and --pipeline-batches and --steps at least --rounds")
    seeds = [i for i in range(max(1, args.seeds))]
    cpu = torch.device("cpu")
    peaks = matmul_flops(cpu, args.peak_seconds if args.peak_seconds is not None else (0.3 if args.quick else 1.5))
    dtype = amp_dtype(cpu, True)
    precision = describe_precision(cpu, True, True)

    with tempfile.TemporaryDirectory(prefix="tiny-bench-") as tmp_name:
        tmp = Path(tmp_name)
        root = tiny.resolve_root(args.data) if args.data is not None else find_real_subset()
        real = root is not None
        if root is None:
            classes = 10 if args.quick else args.synthetic_classes
            per_class = 8 if args.quick else args.synthetic_per_class
            root = tiny.write_synthetic_tiny_imagenet(tmp / "data", n_classes=classes, n_train_per_class=per_class,
                                                      n_val_per_class=max(2, per_class // 10), seed=0)
            source = f"synthetic Tiny-ImageNet ({classes} classes × {per_class} train JPEGs, official layout)"
        else:
            source = f"Tiny-ImageNet at {root}"
        print(f"data: {source}; batch {args.batch}; reference: ImageFolder + DataLoader(num_workers="
              f"{args.workers}) with PIL transforms; torch {torch.__version__}, CPU, {torch.get_num_threads()} "
              "threads", flush=True)

        # 1. the one-off cache build, then a reload
        cache = tmp / "cache"
        train_set, val_set = tiny.TinyImageNet(root, "train"), tiny.TinyImageNet(root, "val")
        start = time.perf_counter()
        train_set.tensors(cache_dir=cache, verbose=False)
        val_set.tensors(cache_dir=cache, verbose=False)
        build = time.perf_counter() - start
        start = time.perf_counter()
        train_tensors = train_set.tensors(cache_dir=cache, verbose=False)
        val_tensors = val_set.tensors(cache_dir=cache, verbose=False)
        reload = time.perf_counter() - start
        n_images = len(train_set) + len(val_set)

        # 2. tooling, the pipeline alone: both sides in alternating rounds, equal numbers of batches
        val_folder = tiny.build_val_imagefolder(root, tmp / "val-imagefolder")
        ref_train, ref_val = reference_loaders(root, val_folder, args.workers, args.batch)
        with _cache_in(tmp):
            lab_data = tiny.tiny_imagenet_loaders(root, batch_size=args.batch, eval_batch_size=args.batch,
                                                  device="cpu", verbose=False)
        pipes = {}
        for split, loaders in (("train", (ref_train, lab_data.train)), ("val", (ref_val, lab_data.val))):
            pipes[split] = [LoaderTimer(loader, expect=SHAPE) for loader in loaders]
            alternate(pipes[split], pipe_batches, rounds)
        pipe_med = {split: [statistics.median(_speeds(t)) for t in timers] for split, timers in pipes.items()}
        pipeline_ratio = pipe_med["train"][1] / pipe_med["train"][0]

        # 3. tooling, end to end: the course ResNet18 and the example's recipe, plain loop vs fit
        print(f"tooling: ResNet18 training, {steps} steps a side in {rounds} alternating rounds ...", flush=True)
        timers = [resnet18_timer(TrainingTimer, ref_train, lab_data.num_classes),
                  resnet18_timer(FitTimer, lab_data.train, lab_data.num_classes)]
        alternate(timers, steps, rounds)
        ref_med, lab_med = (statistics.median(_speeds(t)) for t in timers)
        tooling_ratio = lab_med / ref_med
        flops = resnet18_flops(args.batch, lab_data.num_classes)
        fraction = peak_fraction(lab_med, flops, peaks, dtype)
        ref_wait, lab_wait = (t.speed.wait_share for t in timers)
        del ref_train, ref_val

        rows = [
            ("", "cache build: decode every JPEG once (one-off), s", "", f"{build:.1f}",
             f"{n_images:,} images, {n_images / build:,.0f}/s"),
            ("", "cache reload (later runs), s", "", f"{reload:.2f}", ""),
        ]
        for split in ("train", "val"):
            ref_t, lab_t = pipes[split]
            what = "augmented train" if split == "train" else "val"
            rows.append(("tooling", f"pipeline alone, {what} images/s (min / median / max)",
                         spread_text(_speeds(ref_t), "{:,.0f}"), spread_text(_speeds(lab_t), "{:,.0f}"),
                         f"{pipe_med[split][1] / pipe_med[split][0]:.1f}x"))
        rows += [
            ("tooling", f"ResNet18 training, CPU, {precision} on both sides, images/s (min / median / max)",
             spread_text(_speeds(timers[0])), spread_text(_speeds(timers[1])), f"{tooling_ratio:.2f}x"),
            ("", "  share of time waiting for data", f"{ref_wait:.1%}", f"{lab_wait:.1%}", ""),
            ("limit", (f"  peak_fraction: training FLOP/s ({flops / 1e9:,.2f} GFLOPs per image, FlopCounterMode) / "
             f"{precision_name(dtype)} matmul FLOP/s (2048x2048: {matmul_text(peaks)} GFLOP/s)"),
             f"{peak_fraction(ref_med, flops, peaks, dtype):.3f}", f"{fraction:.3f}", ""),
        ]
        del timers

        # 4. recipe: Lab 04's default against the example's, same model, pipeline and epochs
        recipe_ratio = med_top1 = ref_top1 = "na"
        if not args.no_recipe:
            classes = min(args.recipe_classes, lab_data.num_classes)
            train = first_classes(*train_tensors, classes)
            val = first_classes(*val_tensors, classes)
            print(f"recipe: {len(seeds)} seeds a side, {classes} classes ({len(train[0]):,} train / {len(val[0]):,} "
                  f"val images), ResNet-18 width {recipe_width}, {recipe_epochs} epochs ...", flush=True)
            runs = recipe_runs(seeds, train=train, val=val, classes=classes, epochs=recipe_epochs,
                               width=recipe_width, batch_size=args.batch)
            top1 = {side: [r["top1"] for r in rs] for side, rs in runs.items()}
            med = {side: statistics.median(v) for side, v in top1.items()}
            recipe_ratio = f"{med['labkit'] / med['reference']:.2f}" if med["reference"] > 0 else "na"
            med_top1, ref_top1 = f"{100 * med['labkit']:.2f}", f"{100 * med['reference']:.2f}"
            size = (f"{classes} classes, {len(train[0]):,} train / {len(val[0]):,} val images, ResNet-18 width "
                    f"{recipe_width}, {recipe_epochs} epochs, batch {args.batch}")
            rows += [
                ("recipe", f"val top-1 %, min / median / max over {len(seeds)} seeds ({size})",
                 spread_text((100 * v for v in top1["reference"]), "{:.2f}"),
                 spread_text((100 * v for v in top1["labkit"]), "{:.2f}"), f"{recipe_ratio}x"),
                ("", "  val top-5 %, median", f"{100 * statistics.median(r['top5'] for r in runs['reference']):.2f}",
                 f"{100 * statistics.median(r['top5'] for r in runs['labkit']):.2f}", ""),
                ("", "  seconds per run, median", f"{statistics.median(r['seconds'] for r in runs['reference']):.0f}",
                 f"{statistics.median(r['seconds'] for r in runs['labkit']):.0f}", ""),
            ]

        # 5. the label-mapping check on the real subset
        val_top5 = verdict = "na"
        run_check = real and not args.no_check and (args.check or not args.quick)
        if run_check:
            print(f"label-mapping check: {CHECK} on {root}, at most {CHECK_SECONDS:.0f} s ...", flush=True)
            result = label_mapping_check(root, tmp)  # the cache of step 1: the subset is not decoded again
            val_top5 = f"{100 * result['val_top5']:.2f}"
            verdict = "PASS" if result["val_top5"] >= CHECK_TARGET and result["seconds"] <= CHECK_SECONDS else "FAIL"
            label = (f"real-subset check: {CHECK['arch']} width {CHECK['width']}, val top-5 ({verdict}, "
                     f">= {100 * CHECK_TARGET:.1f} %)")
            detail = (f"top-1 {100 * result['val_accuracy']:.2f} %, {result['epochs']} epochs, "
                      f"{result['seconds']:.0f} s incl. {result['prepare_seconds']:.0f} s data")
            rows.append(("", label, "", f"{val_top5} %", detail))
            if result["stop_reason"] and "budget" not in result["stop_reason"]:
                print(f"  note: {result['stop_reason']}")
            print("  same from the CLI: labkit run tiny-imagenet --data " + str(root) + " --arch resnet10 "
                  "--width 32 --epochs 4 --lr 0.2 --schedule onecycle --train-per-class 50 --val-per-class 50 "
                  "--device cpu "
                  "--time-budget 590")
        elif not real:
            print("label-mapping check skipped: the real subset (../shared/datasets/tiny-imagenet-200) is absent")

    print()
    print(markdown_table(("question", "measure", "reference", "labkit", "labkit better by"), rows))
    print(f"\n(tooling: {pipe_batches} batches a side for each pipeline, {steps} training steps a side, in {rounds} "
          f"rounds, the order reversed every other round, first batches untimed; ratios are of medians. Recipe: "
          f"reference = the example's SGD (wd 1e-4, lr x0.1 every 30 epochs), labkit = Lab 04's default (wd 5e-4, "
          f"cosine); val read once per run; nothing tuned. Train images {len(train_tensors[0]):,}.)")
    print(f"RESULT tooling_ratio={tooling_ratio:.2f} recipe_ratio={recipe_ratio} pipeline_ratio={pipeline_ratio:.2f} "
          f"val_top1={med_top1} ref_val_top1={ref_top1} val_top5={val_top5} label_check={verdict} "
          f"peak_fraction={fraction:.3f} precision={precision_name(dtype)} {matmul_text(peaks)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
