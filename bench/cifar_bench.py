"""CIFAR-10 data pipeline and ResNet-20 training speed: labkit against the course script's pipeline.

Reference (built like the course script, in this process): `torchvision.datasets.CIFAR10` with
`transforms.Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(), Normalize(...)])`
served by `DataLoader(batch_size=128, shuffle=True, num_workers=2)`: PIL images augmented one at a
time in two worker processes.
labkit: the uint8 images resident as one tensor, batches gathered by index and cropped, flipped and
normalised as whole batches on the training device (`labkit.data.cifar.cifar10_loaders`).

Measured, both on the same 50,000 training images (the real CIFAR-10 when a copy is found under
LABKIT_DATA or ../shared/datasets, else synthetic images written in the real pickle layout so that
torchvision's class reads the very same files):
  1. pipeline alone: augmented, normalised batches of 128 delivered per second, no model;
  2. end-to-end ResNet-20 training on the CPU (a bounded number of SGD steps, the two sides
     alternating in chunks so that a shared machine's changing load hits both alike), images/s and
     the share of the time the training loop spends waiting for the next batch;
  3. on CUDA, when present: end-to-end images/s and seconds per epoch (the reference as the course
     script runs it, fp32 with `.to(device)`; labkit with data on the GPU, channels_last and autocast).
Throughput is steady state: the first batch (worker start-up, first-call overheads) is not timed.

    python bench/cifar_bench.py            # full (a few minutes on a 2-core CPU)
    python bench/cifar_bench.py --quick    # fast correctness run
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

import torch

from labkit import config
from labkit.data import cifar
from labkit.models.cifar_resnet import resnet20
from labkit.throughput import TrainingTimer, alternate, loader_speed, markdown_table

SHAPE = (3, 32, 32)  # what both pipelines deliver: augmented, normalised float images

# --- data -------------------------------------------------------------------------------------------------

def find_real_cifar() -> Path | None:
    """A complete real CIFAR-10 folder's root (LABKIT_DATA, then ../shared/datasets), or None."""
    roots = [config.data_root()]
    shared = config.shared_datasets()
    if shared is not None:
        roots.append(shared)
    for root in roots:
        folder = cifar.cifar10_folder(root)
        if all((folder / name).is_file() for name in cifar.required_files()):
            return root
    return None


def reference_dataset(root: Path):
    """torchvision's CIFAR10 with the course script's transforms.

    torchvision verifies each file's md5 against the official release; synthetic files have other
    checksums, so this subclass lists the checksums of the files on disk (for the real data they are
    the official ones). Nothing else differs from `torchvision.datasets.CIFAR10`.
    """
    import torchvision.transforms as T
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import calculate_md5

    folder = cifar.cifar10_folder(root)

    class LocalCIFAR10(CIFAR10):
        train_list: ClassVar = [[name, calculate_md5(str(folder / name))] for name in cifar.TRAIN_FILES]
        test_list: ClassVar = [[name, calculate_md5(str(folder / name))] for name in cifar.TEST_FILES]
        meta: ClassVar = {**CIFAR10.meta, "md5": calculate_md5(str(folder / cifar.META_FILE))}

    transform = T.Compose([
        T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(cifar.MEAN, cifar.STD),
    ])
    return LocalCIFAR10(str(root), train=True, transform=transform)


def reference_loader(root: Path, workers: int, batch_size: int) -> Iterable:
    from torch.utils.data import DataLoader

    return DataLoader(reference_dataset(root), batch_size=batch_size, shuffle=True, num_workers=workers)


def labkit_loader(root: Path, device: torch.device, batch_size: int) -> Iterable:
    train, test = cifar.load_cifar10_splits(root)
    loader, _ = cifar.cifar10_loaders(train, test, batch_size=batch_size, device=device, seed=0)
    return loader


class ResNet20Timer(TrainingTimer):
    """ResNet-20 with the course's optimizer (SGD momentum 0.9, weight decay 5e-4) fed by one loader."""

    def __init__(self, loader: Iterable, device: torch.device, fast_math: bool = False) -> None:
        torch.manual_seed(0)
        model = resnet20()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        super().__init__(model, optimizer, loader, device, fast_math=fast_math, warmup_steps=2)


# --- report -----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few batches and steps: a correctness run")
    parser.add_argument("--images", type=int, default=50_000, help="synthetic training images (default 50,000)")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128, the course's)")
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers (default 2)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per side (default 40)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads of this process (default: torch's choice); "
                             "the reference's workers always use 1 each")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ref_batches, lab_batches, steps = (8, 30, 4) if args.quick else (60, 300, 40)
    steps = args.steps or steps
    cpu = torch.device("cpu")

    with tempfile.TemporaryDirectory(prefix="cifar-bench-") as tmp:
        root = find_real_cifar()
        if root is not None:
            source = f"real CIFAR-10 from {cifar.cifar10_folder(root)}"
        else:
            root = Path(tmp)
            cifar.write_synthetic_cifar10(root, n_train=args.images, n_test=1000, seed=0)
            source = f"synthetic CIFAR-10 ({args.images:,} training images in the real pickle layout)"
        print(f"data: {source}; batch {args.batch}; reference: torchvision CIFAR10 + DataLoader("
              f"num_workers={args.workers}) with PIL transforms; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads")

        rows: list[tuple[str, str, str, str]] = []
        ref_pipe = loader_speed(reference_loader(root, args.workers, args.batch), ref_batches, cpu, expect=SHAPE)
        lab_pipe = loader_speed(labkit_loader(root, cpu, args.batch), lab_batches, cpu, expect=SHAPE)
        ratio = lab_pipe.images_per_s / ref_pipe.images_per_s
        rows.append(("pipeline alone (CPU), images/s", f"{ref_pipe.images_per_s:,.0f}",
                     f"{lab_pipe.images_per_s:,.0f}", f"{ratio:.1f}x"))

        ref_train, lab_train = alternate(
            [ResNet20Timer(reference_loader(root, args.workers, args.batch), cpu),
             ResNet20Timer(labkit_loader(root, cpu, args.batch), cpu)], steps)
        train_ratio = lab_train.images_per_s / ref_train.images_per_s
        rows.append(("ResNet-20 training (CPU), images/s", f"{ref_train.images_per_s:,.1f}",
                     f"{lab_train.images_per_s:,.1f}", f"{train_ratio:.2f}x"))
        rows.append(("  share of time waiting for data", f"{ref_train.wait_share:.1%}",
                     f"{lab_train.wait_share:.1%}", ""))
        rows.append(("  seconds per epoch (50,000 images)", f"{50_000 / ref_train.images_per_s:,.0f}",
                     f"{50_000 / lab_train.images_per_s:,.0f}", ""))

        extra = ""
        if torch.cuda.is_available():
            gpu = torch.device("cuda")
            gpu_steps = 20 if args.quick else 200
            ref_gpu, ref_gpu_fast, lab_gpu = alternate([
                ResNet20Timer(reference_loader(root, args.workers, args.batch), gpu),
                ResNet20Timer(reference_loader(root, args.workers, args.batch), gpu, fast_math=True),
                ResNet20Timer(labkit_loader(root, gpu, args.batch), gpu, fast_math=True),
            ], gpu_steps)
            gpu_ratio = lab_gpu.images_per_s / ref_gpu.images_per_s
            name = torch.cuda.get_device_name(gpu)
            rows.append((f"ResNet-20 training ({name}), images/s", f"{ref_gpu.images_per_s:,.0f}",
                         f"{lab_gpu.images_per_s:,.0f}", f"{gpu_ratio:.1f}x"))
            rows.append(("  share of host time in next(loader)", f"{ref_gpu.wait_share:.1%}",
                         f"{lab_gpu.wait_share:.1%}", ""))
            rows.append(("  seconds per epoch (50,000 images)", f"{50_000 / ref_gpu.images_per_s:.1f}",
                         f"{50_000 / lab_gpu.images_per_s:.1f}", ""))
            rows.append(("  reference loader + channels_last/autocast, images/s",
                         f"{ref_gpu_fast.images_per_s:,.0f}", "", ""))
            extra = f" cuda_train_ratio={gpu_ratio:.2f}"

    print()
    print(markdown_table(("measure", "reference", "labkit", "labkit / reference"), rows))
    print(f"\n(timed: {ref_batches} reference / {lab_batches} labkit batches for the pipeline, "
          f"{steps} training steps per side on the CPU; first batches untimed)")
    print(f"RESULT ratio={ratio:.2f} train_ratio={train_ratio:.2f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
