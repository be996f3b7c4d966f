"""Tiny-ImageNet data pipeline and ResNet18 training speed, labkit against PyTorch's ImageNet example.

Reference (built like PyTorch's ImageNet example at Tiny-ImageNet's native 64×64, in this process):
`ImageFolder(train/)` with `Compose([RandomCrop(64, padding=4), RandomHorizontalFlip(), ToTensor(),
Normalize(ImageNet mean/std)])` served by `DataLoader(batch_size=128, shuffle=True, num_workers=2)`;
val through `ImageFolder` on a reorganised val folder of symlinks built in a temp dir.
labkit: every JPEG decoded once into a uint8 tensor cache (built fresh here, in a temp cache dir, so its
one-off cost is measured), batches gathered from it and cropped, flipped and normalised as whole batches
(`labkit.data.tiny_imagenet.tiny_imagenet_loaders`).

Measured on the same files (the real subset in ../shared/datasets/tiny-imagenet-200 or
$LABKIT_DATA/tiny-imagenet-200 when present, else synthetic JPEGs written in the official layout):
  1. the one-off cache build (decode every train and val JPEG) and a cache reload;
  2. pipeline alone: augmented, normalised train batches per second, no model; val batches too;
  3. end-to-end training of the course model (torchvision resnet18, 200 classes) on the CPU for a bounded
     number of SGD steps, the two sides alternating in chunks so a shared machine's load hits both alike:
     images/s and the share of time spent waiting for the next batch;
  4. with the real subset: the label-mapping check — a CPU run of at most 10 minutes (cache build
     included) of the lab's narrow ResNet-10 on the first 50 train and 50 val images of every class
     (so it is bounded on the full 100,000-image set too, and reuses step 1's cache on the subset) must
     reach val top-5 >= 7.5 % (3× chance).

    python bench/tiny_bench.py            # full (about 12 minutes on a 2-core CPU with the real subset)
    python bench/tiny_bench.py --quick    # fast correctness run (no 10-minute check unless --check)

Last line: `RESULT ratio=<pipeline-alone ratio> train_ratio=<end-to-end CPU ratio> val_top5=<%, or na>
label_check=<PASS, FAIL or na>`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # run from a checkout without installing labkit
    sys.path.insert(0, str(_REPO))

import torch

from labkit import config
from labkit.data import tiny_imagenet as tiny
from labkit.throughput import TrainingTimer, alternate, loader_speed, markdown_table

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


class ResNet18Timer(TrainingTimer):
    """The course model (torchvision resnet18) and optimizer (SGD momentum 0.9, wd 1e-4) fed by one loader."""

    def __init__(self, loader: Iterable, num_classes: int) -> None:
        from torchvision.models import resnet18

        torch.manual_seed(0)
        model = resnet18(num_classes=num_classes)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        super().__init__(model, optimizer, loader)


def label_mapping_check(root: Path, cache_dir: Path, seconds: float = CHECK_SECONDS) -> dict:
    """Train the lab's check model on `root` within `seconds` (cache build included); val top-1/top-5."""
    from labkit.experiments import tiny_imagenet as lab

    start = time.perf_counter()
    cfg = lab.LAB.config("full", data=str(root), device="cpu", tensorboard=False, **CHECK)
    with _cache_in(cache_dir):
        data = lab.load_data(cfg)
    prepared = time.perf_counter() - start
    run = lab.train(cfg.replace(time_budget=max(seconds - prepared - 5.0, 1.0)), data, progress=False,
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

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few batches and steps: a correctness run")
    parser.add_argument("--data", type=Path, default=None, help="a tiny-imagenet-200 folder (default: found)")
    parser.add_argument("--synthetic-classes", type=int, default=200, help="classes of synthetic data (no real data)")
    parser.add_argument("--synthetic-per-class", type=int, default=50, help="train images per synthetic class")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers (default 2)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per side (default 24)")
    parser.add_argument("--check", action="store_true", help="run the 10-minute real-data check even with --quick")
    parser.add_argument("--no-check", action="store_true", help="skip the 10-minute real-data check")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of this process")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ref_batches, lab_batches, steps = (4, 20, 2) if args.quick else (40, 300, 24)
    steps = args.steps or steps

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
              f"{args.workers}) with PIL transforms; torch {torch.__version__}, {torch.get_num_threads()} threads")

        # 1. the one-off cache build, then a reload
        cache = tmp / "cache"
        train_set, val_set = tiny.TinyImageNet(root, "train"), tiny.TinyImageNet(root, "val")
        start = time.perf_counter()
        train_set.tensors(cache_dir=cache, verbose=False)
        val_set.tensors(cache_dir=cache, verbose=False)
        build = time.perf_counter() - start
        start = time.perf_counter()
        train_x, _ = train_set.tensors(cache_dir=cache, verbose=False)
        val_set.tensors(cache_dir=cache, verbose=False)
        reload = time.perf_counter() - start
        n_images = len(train_set) + len(val_set)

        # 2. pipeline alone
        val_folder = tiny.build_val_imagefolder(root, tmp / "val-imagefolder")
        ref_train, ref_val = reference_loaders(root, val_folder, args.workers, args.batch)
        with _cache_in(tmp):
            lab_data = tiny.tiny_imagenet_loaders(root, batch_size=args.batch, eval_batch_size=args.batch,
                                                  device="cpu", verbose=False)
        ref_pipe = loader_speed(ref_train, ref_batches, expect=SHAPE).images_per_s
        lab_pipe = loader_speed(lab_data.train, lab_batches, expect=SHAPE).images_per_s
        ref_val_pipe = loader_speed(ref_val, ref_batches, expect=SHAPE).images_per_s
        lab_val_pipe = loader_speed(lab_data.val, lab_batches, expect=SHAPE).images_per_s
        ratio = lab_pipe / ref_pipe

        # 3. end-to-end training of the course ResNet18
        timers = [ResNet18Timer(ref_train, lab_data.num_classes), ResNet18Timer(lab_data.train, lab_data.num_classes)]
        ref_run, lab_run = alternate(timers, steps)
        train_ratio = lab_run.images_per_s / ref_run.images_per_s
        del timers, ref_train, ref_val

        rows = [
            ("cache build: decode every JPEG once (one-off), s", "", f"{build:.1f}",
             f"{n_images:,} images, {n_images / build:,.0f}/s"),
            ("cache reload (later runs), s", "", f"{reload:.2f}", ""),
            ("pipeline alone, augmented train images/s", f"{ref_pipe:,.0f}", f"{lab_pipe:,.0f}", f"{ratio:.1f}x"),
            ("pipeline alone, val images/s", f"{ref_val_pipe:,.0f}", f"{lab_val_pipe:,.0f}",
             f"{lab_val_pipe / ref_val_pipe:.1f}x"),
            ("ResNet18 training (CPU), images/s", f"{ref_run.images_per_s:,.1f}", f"{lab_run.images_per_s:,.1f}",
             f"{train_ratio:.2f}x"),
            ("  share of time waiting for data", f"{ref_run.wait_share:.1%}", f"{lab_run.wait_share:.1%}", ""),
        ]

        # 4. the label-mapping check on the real subset
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
            rows.append((label, "", f"{val_top5} %", detail))
            if result["stop_reason"] and "budget" not in result["stop_reason"]:
                print(f"  note: {result['stop_reason']}")
            print("  same from the CLI: labkit run tiny-imagenet --data " + str(root) + " --arch resnet10 "
                  "--width 32 --epochs 4 --lr 0.2 --schedule onecycle --train-per-class 50 --val-per-class 50 "
                  "--device cpu "
                  "--time-budget 590")
        elif not real:
            print("label-mapping check skipped: the real subset (../shared/datasets/tiny-imagenet-200) is absent")

    print()
    print(markdown_table(("measure", "reference", "labkit", "labkit / reference"), rows))
    print(f"\n(timed: {ref_batches} reference / {lab_batches} labkit batches for each pipeline, "
          f"{steps} training steps per side; first batches untimed; train images {len(train_x):,})")
    print(f"RESULT ratio={ratio:.2f} train_ratio={train_ratio:.2f} val_top5={val_top5} label_check={verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
