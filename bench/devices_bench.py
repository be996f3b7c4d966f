"""Training images/s on the CPU, one GPU and all visible GPUs, and the per-device vs global batch question:
the table students fill in.

The course asked students to time CPU vs 1 GPU vs 8 GPUs. This bench trains the same model (default:
torchvision's resnet18 with a 200-way head, the Lab 04 course model) on synthetic 64x64 images through
the one labkit training loop (`labkit.engine.fit`, via `throughput.FitTimer` (bench/throughput.py); tensor-resident
`TensorLoader`; with `--amp` (default on) `fit(amp=True, channels_last=True)` on every device: channels_last on
the CPU and CUDA, and mixed precision where the device runs it natively (`labkit.device.amp_dtype`: bf16 on
recent GPUs, else fp16; bf16 on a CPU with native bf16, fp32 on other CPUs)), and reports images/s per round
(min / median / max over `--rounds` rounds of `--cpu-batches` / `--gpu-batches` batches each; the first
batches of every setup are untimed warm-up).

Several processes run under `torchrun` with DistributedDataParallel, the way
`torchrun --standalone --nproc_per_node=N -m labkit run tiny-imagenet` does, and answer the question
both ways, measured in the same processes with the two setups alternating round by round
(`throughput.alternate` (bench/throughput.py)):
  * global batch kept: a global batch B split over N processes, B/N per process (what the lab's
    `--batch-size` means under torchrun; each process does 1/N of the work of a step);
  * per-device batch kept: B per process, so N*B global (each process does a whole one-process step; the
    ideal is N times the one-process figure, but there are N times fewer steps per epoch).
On the CPU the processes use gloo (`--cpu-processes`, default 2; one thread each under
`OMP_NUM_THREADS=1`); on GPUs NCCL, one process per visible GPU. The one-process rows run in this
process, half their rounds before the torchrun launch and half after it, so they bracket it in time.
Devices that do not exist are `na`.

    OMP_NUM_THREADS=1 python bench/devices_bench.py         # full run (2 minutes on a busy 2-core CPU)
    python bench/devices_bench.py --quick                   # seconds: correctness only
    python bench/devices_bench.py --model labkit.labs.tiny_imagenet.model:resnet18_64   # any factory

Last line: `RESULT cpu=<img/s> cpu_ddp_global=<img/s or na> cpu_ddp_per_process=<img/s or na> cpu_procs=<N>
gpu1=<img/s or na> gpus=<img/s or na> gpus_global=<img/s or na> peak_fraction=<x or na> precision=<fp32|bf16>
matmul_fp32_gflops=<x> matmul_bf16_gflops=<x or na>` (+ `gpu1_peak_fraction`, `cuda_matmul_*_gflops` with a
GPU) (medians over the rounds; `gpus` keeps the per-device batch, `gpus_global` the global one).
`peak_fraction`: the one-process CPU row's training FLOP/s (images/s × the FLOPs of one training step per
image, counted by `FlopCounterMode` at the CPU batch) over the CPU's 2048x2048 matmul FLOP/s in the
precision it trained in, measured in the same run (`throughput.matmul_flops`, `--peak-seconds`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # run from a checkout without installing labkit
    sys.path.insert(0, str(_REPO))
sys.path.insert(0, str(_REPO / "bench"))  # bench/throughput.py

import torch
from torch import nn

WORKER_TAG = "DEVICES_BENCH_WORKER"
#: the two ways to run N processes, as labels of the setups
GLOBAL, PER_DEVICE = "global batch kept", "per-device batch kept"
WARMUP_STEPS = 2


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


def make_timer(args: argparse.Namespace, device: torch.device, batch: int):
    """A `FitTimer` for one setup: the model (seed 0; DDP-wrapped under a process group) and this
    process's shard of synthetic images in batches of `batch`, already warmed up."""
    from throughput import FitTimer

    from labkit import distributed
    from labkit.data.augment import Compose, Normalize, ToFloat

    world = distributed.world_size()
    torch.manual_seed(0)
    fast = args.amp  # the device's best settings: channels_last and native mixed precision, CPU and CUDA
    model = distributed.wrap_model(build_model(args.model, args.classes), device, channels_last=fast)
    images, labels = synthetic_images(batch * world * 8, args.size, args.classes)  # the stream wraps epochs
    loader = distributed.tensor_loader(
        images, labels, batch_size=batch, shuffle=True, drop_last=True, device=device, seed=0,
        transform=Compose([ToFloat(), Normalize((0.48, 0.45, 0.40), (0.27, 0.26, 0.28))]),
    )  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return FitTimer(model, optimizer, loader, device, fast_math=fast, warmup_steps=WARMUP_STEPS)


def step_flops(args: argparse.Namespace, device: torch.device, batch: int) -> float:
    """FLOPs per training image of the bench's model: one forward + backward at `batch` (FlopCounterMode)."""
    from throughput import training_flops

    torch.manual_seed(0)
    model = build_model(args.model, args.classes).to(device)
    images = torch.randn(batch, 3, args.size, args.size, device=device)
    return training_flops(model, images, torch.randint(0, args.classes, (batch,), device=device)) / batch


def _record(timer, processes: int, batch: int, batches: int) -> dict:
    """A setup's figures: images/s of every round over all processes (each process trains its own shard)."""
    return {"processes": processes, "batch": batch, "global_batch": batch * processes,
            "images_per_round": batch * processes * batches,
            "img_per_s": [r.images_per_s * processes for r in timer.rounds]}


def measure_one(args: argparse.Namespace, device: torch.device, batches: int, rounds: int, batch: int) -> dict:
    """One process (this one, no process group): `rounds` rounds of `batches` batches of `batch`."""
    timer = make_timer(args, device, batch)
    for _ in range(rounds):
        timer.run(batches)
    return _record(timer, 1, batch, batches)


def merge(first: dict, second: dict) -> dict:
    """One setup measured in two parts (before and after the torchrun launch)."""
    return {**first, "img_per_s": first["img_per_s"] + second["img_per_s"]}


def worker(args: argparse.Namespace) -> None:
    """One torchrun process: both N-process setups, alternating by rounds; rank 0 prints the result as JSON."""
    from throughput import alternate

    from labkit import distributed

    context = distributed.init_distributed(device=args.worker)
    try:
        world = context.world_size
        cuda = context.device.type == "cuda"
        batches = args.gpu_batches if cuda else args.cpu_batches
        batch = args.batch if cuda else args.cpu_batch
        per_process = {GLOBAL: distributed.per_rank_batch_size(batch, world), PER_DEVICE: batch}
        timers = {name: make_timer(args, context.device, b) for name, b in per_process.items()}
        alternate(list(timers.values()), batches * args.rounds, args.rounds)
        result = {name: _record(timers[name], world, per_process[name], batches) for name in timers}
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
        "--batch", str(args.batch), "--cpu-batch", str(args.cpu_batch), "--rounds", str(args.rounds),
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


def bracketed(args: argparse.Namespace, device: str, processes: int, batches: int, batch: int) -> tuple[dict, dict]:
    """The one-process setup in this process, half its rounds before and half after the `processes`-process
    launch (none when `processes` < 2); (one-process result, {setup: result} of the launch)."""
    first = (args.rounds + 1) // 2
    here = torch.device("cuda", 0) if device == "cuda" else torch.device("cpu")
    one = measure_one(args, here, batches, first, batch)
    if here.type == "cuda":
        torch.cuda.empty_cache()  # leave the GPU's memory to the torchrun processes
    launched = run_ddp(args, processes, device) if processes >= 2 else {}
    if args.rounds > first:
        one = merge(one, measure_one(args, here, batches, args.rounds - first, batch))
    return one, launched


def median(result: dict | None) -> float | None:
    return None if result is None else statistics.median(result["img_per_s"])


def _fmt(result: dict | None) -> str:
    return "na" if result is None else f"{median(result):.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="torchvision name or module:function")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=None, help="GPU batch per device, B (default 128)")
    parser.add_argument("--cpu-batch", type=int, default=None,
                        help="CPU batch of one process, B (default 32: a CPU step on 128 images takes seconds)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per setup (default 5)")
    parser.add_argument("--cpu-batches", type=int, default=None, help="batches per CPU round (default 8)")
    parser.add_argument("--gpu-batches", type=int, default=None, help="batches per GPU round (default 50)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                        help="channels_last and native mixed precision, CPU and CUDA (default on)")  # fmt: skip
    parser.add_argument("--peak-seconds", type=float, default=None,
                        help="seconds of 2048x2048 matmuls per precision (default 1.5; 0.3 with --quick)")
    parser.add_argument("--no-cpu", action="store_true", help="skip the (slow) CPU measurements")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a correctness run")
    parser.add_argument("--cpu-processes", type=int, default=2,
                        help="N: also time N CPU processes with DDP (gloo) through torchrun, both ways (0: off)")
    parser.add_argument("--worker", choices=("cuda", "cpu"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = {"batch": (8, 128), "cpu_batch": (8, 32), "rounds": (3, 5), "cpu_batches": (2, 8),
                "gpu_batches": (4, 50)}  # (--quick, full)
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
        elif getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    os.environ.setdefault("LABKIT_PROGRESS", "0")

    if args.worker:
        worker(args)
        return
    if args.cpu_processes == 1 or args.cpu_processes < 0:
        parser.error("--cpu-processes must be 0 (off) or at least 2")
    for name, batch, count in (("--cpu-batch", args.cpu_batch, args.cpu_processes),
                               ("--batch", args.batch, torch.cuda.device_count())):
        if count >= 2 and batch % count:
            parser.error(f"{name} {batch} does not split over {count} processes: choose a multiple of {count}")

    gpus = torch.cuda.device_count()
    print(f"model {args.model} ({args.classes} classes) on synthetic {args.size}x{args.size} images; one process: "
          f"batch {args.cpu_batch} on the CPU, {args.batch} on a GPU; {args.rounds} rounds of {args.cpu_batches} "
          f"(CPU) / {args.gpu_batches} (GPU) batches per setup; {torch.get_num_threads()} CPU threads per process; "
          f"visible GPUs: {gpus}", flush=True)  # fmt: skip

    from throughput import matmul_flops, matmul_text, peak_fraction, precision_name

    from labkit.device import amp_dtype

    seconds = args.peak_seconds if args.peak_seconds is not None else (0.3 if args.quick else 1.5)
    cpu_device = torch.device("cpu")
    peaks = matmul_flops(cpu_device, seconds)
    cpu = cpu_ddp = None
    if not args.no_cpu:
        cpu, cpu_ddp = bracketed(args, "cpu", args.cpu_processes, args.cpu_batches, args.cpu_batch)
    gpu1 = gpu_ddp = None
    if gpus >= 1:
        gpu1, gpu_ddp = bracketed(args, "cuda", gpus, args.gpu_batches, args.batch)
        torch.cuda.empty_cache()
    cpu_ddp, gpu_ddp = cpu_ddp or {}, gpu_ddp or {}

    n_cpu = args.cpu_processes
    table = [("CPU, 1 process", cpu, cpu)]
    if n_cpu >= 2:
        table += [(f"CPU, {n_cpu} processes (DDP gloo), {GLOBAL}", cpu_ddp.get(GLOBAL), cpu),
                  (f"CPU, {n_cpu} processes (DDP gloo), {PER_DEVICE}", cpu_ddp.get(PER_DEVICE), cpu)]
    table.append(("1 GPU", gpu1, gpu1))
    table += [(f"all GPUs ({gpus}, DDP NCCL), {GLOBAL}", gpu_ddp.get(GLOBAL), gpu1),
              (f"all GPUs ({gpus}, DDP NCCL), {PER_DEVICE}", gpu_ddp.get(PER_DEVICE), gpu1)]
    print()
    print("| devices | processes | batch per process | global batch | images per round "
          "| images/s min / median / max | vs 1 process |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, result, base in table:
        if result is None:
            print(f"| {label} | - | - | - | - | na | - |")
            continue
        low, mid, high = min(result["img_per_s"]), median(result), max(result["img_per_s"])
        print(f"| {label} | {result['processes']} | {result['batch']} | {result['global_batch']} "
              f"| {result['images_per_round']} | {low:.1f} / {mid:.1f} / {high:.1f} "
              f"| {mid / median(base):.2f}x |")  # fmt: skip
    for kind, n, one, launched in (("CPU", n_cpu, cpu, cpu_ddp), ("GPU", gpus, gpu1, gpu_ddp)):
        if one is not None and launched:
            kept, split = median(launched[PER_DEVICE]), median(launched[GLOBAL])
            ideal = n * median(one)
            print(f"\n{kind}, {n} processes: keeping the per-device batch gives {kept / split:.2f}x the images/s of "
                  f"keeping the global batch ({kept:.1f} vs {split:.1f}); scaling efficiency {kept / ideal:.0%} of "
                  f"{n}x one process with the per-device batch, {split / ideal:.0%} with the global batch")
    dtype = amp_dtype(cpu_device, args.amp)
    fraction = "na"
    if cpu is not None:
        value = peak_fraction(median(cpu), step_flops(args, cpu_device, args.cpu_batch), peaks, dtype)
        fraction = f"{value:.3f}"
    extra = ""
    if gpu1 is not None:
        gpu = torch.device("cuda", 0)
        gpu_peaks = matmul_flops(gpu, seconds)
        value = peak_fraction(median(gpu1), step_flops(args, gpu, args.batch), gpu_peaks, amp_dtype(gpu, args.amp))
        extra = f" gpu1_peak_fraction={value:.3f} {matmul_text(gpu_peaks, 'cuda_')}"
    print(f"\nagainst the limit (CPU): 2048x2048 matmul {matmul_text(peaks)} (GFLOP/s); one-process CPU "
          f"peak_fraction {fraction} of the {precision_name(dtype)} matmul{extra}")
    print(f"RESULT cpu={_fmt(cpu)} cpu_ddp_global={_fmt(cpu_ddp.get(GLOBAL))} "
          f"cpu_ddp_per_process={_fmt(cpu_ddp.get(PER_DEVICE))} cpu_procs={n_cpu if cpu_ddp else 0} "
          f"gpu1={_fmt(gpu1)} gpus={_fmt(gpu_ddp.get(PER_DEVICE))} gpus_global={_fmt(gpu_ddp.get(GLOBAL))} "
          f"peak_fraction={fraction} precision={precision_name(dtype)} {matmul_text(peaks)}{extra}")


if __name__ == "__main__":
    main()
