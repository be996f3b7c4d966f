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
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from labkit import config
from labkit.data import cifar
from labkit.models.cifar_resnet import resnet20

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


def endless(loader: Iterable) -> Iterator:
    """Batches across epoch boundaries (a bounded measurement may need more than one epoch)."""
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader
        epoch += 1


# --- measurements -----------------------------------------------------------------------------------------

@dataclass
class Speed:
    images_per_s: float
    wait_share: float | None = None  # fraction of the time spent waiting for the next batch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pipeline_speed(loader: Iterable, batches: int, device: torch.device) -> Speed:
    """Augmented, normalised batches per second with no model (first batch not timed)."""
    stream = endless(loader)
    images, _ = next(stream)
    assert images.dtype == torch.float32 and images.shape[1:] == (3, 32, 32), images.shape
    sync(device)
    start = time.perf_counter()
    count = 0
    for _ in range(batches):
        images, _ = next(stream)
        count += images.shape[0]
    sync(device)
    return Speed(count / (time.perf_counter() - start))


class Trainer:
    """ResNet-20 with the course's optimizer fed by one loader; `run(steps)` times SGD steps and
    the part of that time spent waiting in `next(loader)`."""

    def __init__(self, loader: Iterable, device: torch.device, fast_math: bool = False) -> None:
        torch.manual_seed(0)
        self.device = device
        self.fast_math = fast_math
        self.model = resnet20().to(device)
        if fast_math:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        self.loss_fn = nn.CrossEntropyLoss()
        self.use_amp = fast_math and device.type == "cuda"
        bf16 = self.use_amp and torch.cuda.is_bf16_supported()
        self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and not bf16)
        self.stream = endless(loader)
        self.seconds = self.waited = 0.0
        self.images = 0
        for _ in range(2):  # warm-up: first-call overheads, cuDNN algorithm choice, worker start-up
            self.step(*next(self.stream))
        sync(device)

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.fast_math:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.use_amp):
            loss = self.loss_fn(self.model(images), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def run(self, steps: int) -> None:
        start = time.perf_counter()
        for _ in range(steps):
            asked = time.perf_counter()
            images, labels = next(self.stream)
            self.waited += time.perf_counter() - asked
            self.step(images, labels)
            self.images += images.shape[0]
        sync(self.device)
        self.seconds += time.perf_counter() - start

    @property
    def speed(self) -> Speed:
        return Speed(self.images / self.seconds, self.waited / self.seconds)


def training_speeds(trainers: list[Trainer], steps: int, rounds: int = 4) -> list[Speed]:
    """Alternate the trainers in `rounds` chunks of steps, so load changes on a shared machine
    affect all of them alike."""
    rounds = max(1, min(rounds, steps))
    chunk = max(1, steps // rounds)
    for _ in range(rounds):
        for trainer in trainers:
            trainer.run(chunk)
    return [t.speed for t in trainers]


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
        ref_pipe = pipeline_speed(reference_loader(root, args.workers, args.batch), ref_batches, cpu)
        lab_pipe = pipeline_speed(labkit_loader(root, cpu, args.batch), lab_batches, cpu)
        ratio = lab_pipe.images_per_s / ref_pipe.images_per_s
        rows.append(("pipeline alone (CPU), images/s", f"{ref_pipe.images_per_s:,.0f}",
                     f"{lab_pipe.images_per_s:,.0f}", f"{ratio:.1f}x"))

        ref_train, lab_train = training_speeds(
            [Trainer(reference_loader(root, args.workers, args.batch), cpu), Trainer(labkit_loader(root, cpu, args.batch), cpu)], steps)
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
            ref_gpu, ref_gpu_fast, lab_gpu = training_speeds([
                Trainer(reference_loader(root, args.workers, args.batch), gpu),
                Trainer(reference_loader(root, args.workers, args.batch), gpu, fast_math=True),
                Trainer(labkit_loader(root, gpu, args.batch), gpu, fast_math=True),
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
    print("| measure | reference | labkit | labkit / reference |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n(timed: {ref_batches} reference / {lab_batches} labkit batches for the pipeline, "
          f"{steps} training steps per side on the CPU; first batches untimed)")
    print(f"RESULT ratio={ratio:.2f} train_ratio={train_ratio:.2f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
