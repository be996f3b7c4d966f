"""Training images/s on the CPU, one GPU and all visible GPUs: the table students fill in.

The course asked students to time CPU vs 1 GPU vs 8 GPUs. This bench trains the same model
(default: torchvision's resnet18 with a 200-way head, the Lab 04 course model) on synthetic
64x64 data through the one labkit training loop (`labkit.engine.fit`, tensor-resident
`TensorLoader`, AMP and channels_last on CUDA only), and reports images per second of the
last (warm) epoch. All GPUs run through `torchrun` with DistributedDataParallel, the same way
`torchrun --standalone --nproc_per_node=N -m labkit run tiny-imagenet` does: each GPU keeps the
per-device batch, so the ideal is N times the one-GPU figure. Devices that do not exist are `na`.

    python bench/devices_bench.py                # full run
    python bench/devices_bench.py --quick        # seconds: correctness only
    python bench/devices_bench.py --model labkit.models.resnet:resnet18_64   # any factory

Last line: `RESULT cpu=<img/s> gpu1=<img/s or na> gpus=<img/s or na>`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # run from a checkout without installing labkit
    sys.path.insert(0, str(_REPO))

import torch
from torch import nn

WORKER_TAG = "DEVICES_BENCH_WORKER"


def build_model(spec: str, num_classes: int) -> nn.Module:
    """A torchvision model name (`resnet18`) or a factory `package.module:function`."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
    else:
        import torchvision.models as tvm

        if not hasattr(tvm, spec):
            raise SystemExit(f"unknown model {spec!r}: give a torchvision name or module:function")
        factory = getattr(tvm, spec)
    return factory(num_classes=num_classes)


def synthetic_images(n: int, size: int, classes: int, seed: int = 0):
    """Random uint8 images (N, 3, size, size) and labels; identical on every rank."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    return images, labels


def measure(args: argparse.Namespace, device: torch.device, batches: int) -> dict:
    """Train `epochs` short epochs on `device` (DDP under torchrun); img/s of the last one."""
    from labkit import distributed
    from labkit.data.augment import Compose, Normalize, ToFloat
    from labkit.engine import fit

    world = distributed.world_size()
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    model = distributed.wrap_model(build_model(args.model, args.classes), device, channels_last=cuda)
    images, labels = synthetic_images(args.batch * batches * world, args.size, args.classes)
    loader = distributed.tensor_loader(
        images,
        labels,
        batch_size=args.batch,
        shuffle=True,
        drop_last=True,
        device=device,
        seed=0,
        transform=Compose([ToFloat(), Normalize((0.48, 0.45, 0.40), (0.27, 0.26, 0.28))]),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = fit(
        model,
        loader,
        epochs=args.epochs,
        optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(),
        device=device,
        amp=cuda and args.amp,
        channels_last=cuda,
        progress=False,
    )
    seconds = float(history["seconds"][-1])
    images_per_epoch = args.batch * batches * world
    return {
        "device": str(device),
        "processes": world,
        "images": images_per_epoch,
        "seconds": seconds,
        "img_per_s": images_per_epoch / seconds,
    }


def worker(args: argparse.Namespace) -> None:
    """One torchrun process: train on its device; rank 0 prints the result as one JSON line."""
    from labkit import distributed

    context = distributed.init_distributed(device=args.worker)
    try:
        batches = args.gpu_batches if context.device.type == "cuda" else args.cpu_batches
        result = measure(args, context.device, batches)
        if context.is_main_process:
            print(WORKER_TAG + " " + json.dumps(result), flush=True)
    finally:
        distributed.cleanup()


def run_ddp(args: argparse.Namespace, count: int, device: str) -> dict:
    """Launch this script under torchrun: `count` processes on `device` ("cuda" or "cpu")."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={count}",
        str(Path(__file__).resolve()), "--worker", device,
        "--model", args.model, "--classes", str(args.classes), "--size", str(args.size),
        "--batch", str(args.batch), "--epochs", str(args.epochs),
        "--cpu-batches", str(args.cpu_batches), "--gpu-batches", str(args.gpu_batches),
        "--amp" if args.amp else "--no-amp",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    for line in done.stdout.splitlines():
        if line.startswith(WORKER_TAG):
            return json.loads(line[len(WORKER_TAG) :])
    raise RuntimeError(
        f"torchrun with {count} {device} processes gave no result (exit {done.returncode}):\n"
        f"{done.stderr[-3000:]}"
    )


def _fmt(result: dict | None) -> str:
    return "na" if result is None else f"{result['img_per_s']:.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="torchvision name or module:function")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=None, help="batch per device")
    parser.add_argument("--epochs", type=int, default=2, help="the first epoch is warm-up")
    parser.add_argument("--cpu-batches", type=int, default=None, help="batches per CPU epoch")
    parser.add_argument("--gpu-batches", type=int, default=None, help="batches per GPU epoch")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                        help="mixed precision on CUDA (default on)")  # fmt: skip
    parser.add_argument("--no-cpu", action="store_true", help="skip the (slow) CPU measurement")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a correctness run")
    parser.add_argument("--cpu-processes", type=int, default=0,
                        help="also time N CPU processes with DDP (gloo) through torchrun")  # fmt: skip
    parser.add_argument("--worker", choices=("cuda", "cpu"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch warms up and is not timed")
    args.batch = args.batch or (8 if args.quick else 128)
    args.cpu_batches = args.cpu_batches or (2 if args.quick else 4)
    args.gpu_batches = args.gpu_batches or (4 if args.quick else 100)
    os.environ.setdefault("LABKIT_PROGRESS", "0")

    if args.worker:
        worker(args)
        return
    if args.cpu_processes == 1 or args.cpu_processes < 0:
        parser.error("--cpu-processes must be 0 (off) or at least 2")

    cpu_args = argparse.Namespace(**vars(args))
    cpu_args.batch = min(args.batch, 32)  # a CPU step on 128 images takes seconds here
    gpus = torch.cuda.device_count()
    print(f"model {args.model} ({args.classes} classes) on synthetic {args.size}x{args.size} "
          f"images; batch per device {args.batch} (CPU {cpu_args.batch}); "
          f"{args.epochs} epochs, last one timed; visible GPUs: {gpus}")  # fmt: skip

    cpu = None if args.no_cpu else measure(cpu_args, torch.device("cpu"), args.cpu_batches)
    gpu1 = measure(args, torch.device("cuda", 0), args.gpu_batches) if gpus >= 1 else None
    if gpus >= 1:
        torch.cuda.empty_cache()  # leave GPU 0's memory to the torchrun processes
    all_gpus = run_ddp(args, gpus, "cuda") if gpus >= 2 else None
    cpu_ddp = run_ddp(cpu_args, args.cpu_processes, "cpu") if args.cpu_processes >= 2 else None

    print()
    print("| devices | processes | images/epoch | seconds | images/s | vs CPU | vs 1 GPU |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    table = [("CPU", cpu), ("1 GPU", gpu1), (f"all GPUs ({gpus}, DDP)", all_gpus)]
    if args.cpu_processes >= 2:
        table.append((f"CPU, {args.cpu_processes} processes (DDP gloo)", cpu_ddp))
    for label, result in table:
        if result is None:
            print(f"| {label} | - | - | - | na | - | - |")
            continue
        vs_cpu = f"{result['img_per_s'] / cpu['img_per_s']:.1f}x" if cpu else "-"
        vs_gpu = f"{result['img_per_s'] / gpu1['img_per_s']:.2f}x" if gpu1 else "-"
        print(f"| {label} | {result['processes']} | {result['images']} | {result['seconds']:.2f} "
              f"| {result['img_per_s']:.1f} | {vs_cpu} | {vs_gpu} |")  # fmt: skip
    if all_gpus and gpu1:
        efficiency = all_gpus["img_per_s"] / (gpus * gpu1["img_per_s"])
        print(f"\nscaling efficiency on {gpus} GPUs: {100 * efficiency:.0f} % of {gpus}x one GPU")
    print(f"RESULT cpu={_fmt(cpu)} gpu1={_fmt(gpu1)} gpus={_fmt(all_gpus)}")


if __name__ == "__main__":
    main()
