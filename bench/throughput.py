"""Fair throughput measurements: a loader's images/s, training images/s with the share of time spent
waiting for data, and markdown tables of the results (`markdown_table`, now in `labkit.tables`).

The benches (`bench/*_bench.py`) compare labkit's pipelines against reference loops in one
process; these are the pieces they share, so every bench measures the same way: the first batch
(worker start-up, first-call overheads) is never timed, CUDA work is synchronised before a clock
is read, and competing sides run in alternating rounds so that a shared machine's changing load
hits all of them alike. Students can time their own loaders with the same calls.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from labkit.device import amp_dtype, synchronize
from labkit.engine import to_device
from labkit.tables import markdown_table  # noqa: F401 - moved to labkit.tables, re-exported


def endless(loader: Iterable) -> Iterator:
    """Batches across epoch boundaries (calling `set_epoch` where the loader has it), for bounded timing."""
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader
        epoch += 1


@dataclass(frozen=True)
class Speed:
    """Images per second and, for training, the fraction of the time spent waiting for the next batch."""

    images_per_s: float
    wait_share: float | None = None


def _check_batch(images: torch.Tensor, expect: tuple[int, ...] | None) -> None:
    if expect is not None and (not images.is_floating_point() or tuple(images.shape[1:]) != tuple(expect)):
        raise ValueError(f"expected float batches of shape (N, {', '.join(map(str, expect))}), "
                         f"got {images.dtype} {tuple(images.shape)}")


class LoaderTimer:
    """Times a loader on its own (no model), in chunks, like `TrainingTimer` times training steps.

    The first batch (worker start-up, first-call overheads) is drawn at once and not timed; `expect`
    (e.g. `(3, 32, 32)`) checks that it holds float images of that shape, so two sides compared this
    way deliver the same thing (augmented, normalised tensors). `alternate` runs several in rounds.
    """

    def __init__(self, loader: Iterable, device: torch.device | str = "cpu",
                 expect: tuple[int, ...] | None = None) -> None:
        self.device = torch.device(device)
        self.stream = endless(loader)
        images, _ = next(self.stream)
        _check_batch(images, expect)
        synchronize(self.device)
        self.seconds = 0.0
        self.images = 0
        self.rounds: list[Speed] = []

    def run(self, batches: int) -> None:
        """Time `batches` more batches (adds to the totals behind `speed`; one entry in `rounds`)."""
        start = time.perf_counter()
        count = 0
        for _ in range(batches):
            images, _ = next(self.stream)
            count += images.shape[0]
        synchronize(self.device)
        seconds = time.perf_counter() - start
        self.seconds += seconds
        self.images += count
        self.rounds.append(Speed(count / seconds))

    @property
    def speed(self) -> Speed:
        if self.seconds == 0:
            raise RuntimeError("no timed batches yet: call run(batches) first")
        return Speed(self.images / self.seconds)


def loader_speed(loader: Iterable, batches: int, device: torch.device | str = "cpu",
                 expect: tuple[int, ...] | None = None) -> Speed:
    """Images per second the loader delivers on its own (no model); the first batch is not timed.

    `expect` (e.g. `(3, 32, 32)`) checks that the first batch holds float images of that shape, so
    two sides compared this way deliver the same thing (augmented, normalised tensors).
    """
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    timer = LoaderTimer(loader, device, expect)
    timer.run(batches)
    return timer.speed


class TrainingTimer:
    """Times training steps of `model` fed by `loader`, and the part of that time spent in `next(loader)`.

    `fast_math` turns on what labkit's engine uses with `amp=True, channels_last=True`: channels_last
    (CUDA and CPU) and autocast where the device runs mixed precision natively (`labkit.device.amp_dtype`:
    bf16, or fp16 with a GradScaler on older GPUs; bf16 on a CPU with native bf16, fp32 elsewhere): the
    bare loop at its best settings. `warmup_steps` untimed steps run first (first-call overheads, cuDNN
    algorithm choice, worker start-up).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable,
                 device: torch.device | str = "cpu", loss_fn: Callable[..., torch.Tensor] | None = None,
                 fast_math: bool = False, warmup_steps: int = 1) -> None:
        self.device = torch.device(device)
        self.channels_last = fast_math and self.device.type in ("cuda", "cpu")
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = optimizer
        self.loss_fn = loss_fn or nn.CrossEntropyLoss()
        self.amp_dtype = amp_dtype(self.device, fast_math)  # None: fp32
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.stream = endless(loader)
        self.seconds = self.waited = 0.0
        self.images = 0
        self.rounds: list[Speed] = []  # one per `run` call: that chunk's images/s and wait share
        for _ in range(warmup_steps):
            self.step(*next(self.stream))
        synchronize(self.device)

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """One optimizer step on one batch."""
        images, labels = to_device((images, labels), self.device, channels_last=self.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            loss = self.loss_fn(self.model(images), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def run(self, steps: int) -> None:
        """Time `steps` more steps (adds to the totals behind `speed`; one entry in `rounds`)."""
        start = time.perf_counter()
        waited, images_before = self.waited, self.images
        self._train(steps)
        synchronize(self.device)
        seconds = time.perf_counter() - start
        self.seconds += seconds
        self.rounds.append(Speed((self.images - images_before) / seconds, (self.waited - waited) / seconds))

    def _train(self, steps: int) -> None:
        """`steps` steps of the plain loop; `images` and `waited` (time inside `next`) are counted here."""
        for _ in range(steps):
            asked = time.perf_counter()
            images, labels = next(self.stream)
            self.waited += time.perf_counter() - asked
            self.step(images, labels)
            self.images += images.shape[0]

    @property
    def speed(self) -> Speed:
        if self.seconds == 0:
            raise RuntimeError("no timed steps yet: call run(steps) first")
        return Speed(self.images / self.seconds, self.waited / self.seconds)


class FitTimer(TrainingTimer):
    """`TrainingTimer` whose steps go through labkit's training loop, `labkit.engine.fit`.

    Each `run(steps)` is one `fit` call of one epoch over the next `steps` batches of the loader's
    endless stream (`fast_math` becomes fit's `amp` and `channels_last`), so a bench can set labkit's
    loop against a hand-written one on the same model, optimizer and batches. The waiting share is the
    time fit spent fetching those batches.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable,
                 device: torch.device | str = "cpu", loss_fn: Callable[..., torch.Tensor] | None = None,
                 fast_math: bool = False, warmup_steps: int = 1) -> None:
        super().__init__(model, optimizer, loader, device, loss_fn, fast_math, warmup_steps=0)
        self.fast_math = fast_math
        if warmup_steps:
            self._train(warmup_steps)
            self.images = 0
            self.waited = 0.0
        synchronize(self.device)

    def _train(self, steps: int) -> None:
        from labkit.callbacks import Progress
        from labkit.engine import fit

        fit(self.model, _Chunk(self, steps), epochs=1, optimizer=self.optimizer, loss_fn=self.loss_fn,
            device=self.device, amp=self.fast_math, channels_last=self.fast_math, callbacks=[Progress(False)])


class _Chunk:
    """The next `steps` batches of a timer's stream, as a one-epoch loader that counts images and waiting."""

    def __init__(self, timer: TrainingTimer, steps: int) -> None:
        self.timer, self.steps = timer, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator:
        for _ in range(self.steps):
            asked = time.perf_counter()
            images, labels = next(self.timer.stream)
            self.timer.waited += time.perf_counter() - asked
            self.timer.images += images.shape[0]
            yield images, labels


class Timer(Protocol):
    """What `alternate` runs: `TrainingTimer`, `FitTimer`, `LoaderTimer`."""

    rounds: list[Speed]

    def run(self, steps: int) -> None: ...

    @property
    def speed(self) -> Speed: ...


def spread(values: Iterable[float]) -> tuple[float, float, float]:
    """(min, median, max) of per-round figures, e.g. `[s.images_per_s for s in timer.rounds]`."""
    values = list(values)
    if not values:
        raise ValueError("no values: run some rounds first")
    return min(values), statistics.median(values), max(values)


def spread_text(values: Iterable[float], fmt: str = "{:,.1f}", unit: str = "") -> str:
    """'min / median / max' of the values as text, each formatted with `fmt` (a bench table's cell)."""
    return " / ".join(fmt.format(v) for v in spread(values)) + unit


def alternate(timers: Sequence[Timer], steps: int, rounds: int = 4) -> list[Speed]:
    """Run every timer for about `steps` steps (or batches) in `rounds` chunks of equal size, the order
    reversed every other round (A B, B A, A B, ...) so that neither side always goes first; their overall
    speeds, in the order given (each timer's `rounds` holds the speed of every chunk)."""
    rounds = max(1, min(rounds, steps))
    chunk = max(1, steps // rounds)
    for i in range(rounds):
        for timer in (timers if i % 2 == 0 else list(reversed(timers))):
            timer.run(chunk)
    return [timer.speed for timer in timers]



# --- against the limit: the machine's matmul FLOP/s and the FLOPs of a training step ---------------------------

PRECISION = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def precision_name(dtype: torch.dtype | None) -> str:
    """'fp32' for None (no autocast) or float32, else 'bf16' / 'fp16'."""
    return PRECISION[dtype or torch.float32]


def matmul_flops(device: torch.device | str = "cpu", seconds: float = 1.5,
                 size: int = 2048) -> dict[str, float | None]:
    """The device's matmul FLOP/s: a `size`×`size` matmul repeated for about `seconds` after warm-up, in fp32
    and in the device's native half precision (`labkit.device.amp_dtype`: bf16 on CUDA where supported, else
    fp16; bf16 on a CPU with native bf16). {'fp32': FLOP/s, 'bf16': FLOP/s or None, 'fp16': FLOP/s or None}:
    None where that precision is not native here (emulated bf16 is not a limit worth comparing to)."""
    device = torch.device(device)
    out: dict[str, float | None] = {"fp32": None, "bf16": None, "fp16": None}
    half = amp_dtype(device, True)
    for dtype in (torch.float32, half):
        if dtype is None:
            continue
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        for _ in range(2):  # warm-up: first-call overheads, kernel choice
            torch.mm(a, b)
        synchronize(device)
        count, start = 0, time.perf_counter()
        while True:
            for _ in range(4 if device.type == "cuda" else 1):
                torch.mm(a, b)
                count += 1
            synchronize(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        out[precision_name(dtype)] = 2 * size ** 3 * count / elapsed
    return out


def training_flops(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None,
                   loss_fn: Callable[..., torch.Tensor] | None = None, backward: bool = True) -> int:
    """FLOPs of one forward (+ backward) pass of `model` on this batch, counted by
    `torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention: the work a matmul peak
    bounds). A copy of the model is run (its weights, gradients and BatchNorm statistics stay as they
    were), on the inputs' device, in fp32: the count does not depend on the precision. `loss_fn(outputs,
    targets)` (default cross-entropy) gives the loss the backward pass starts from. Divide by the batch's
    samples (images, tokens) for FLOPs per sample."""
    from torch.utils.flop_counter import FlopCounterMode

    twin = copy.deepcopy(model).to(inputs.device)
    twin.train()
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    with FlopCounterMode(display=False) as counter:
        outputs = twin(inputs)
        if backward:
            loss_fn(outputs, targets).backward()
    return int(counter.get_total_flops())


def peak_fraction(samples_per_s: float, flops_per_sample: float, peaks: dict[str, float | None],
                  dtype: torch.dtype | None) -> float:
    """Training FLOP/s (samples/s × FLOPs per sample) over the matmul FLOP/s of the precision the training
    used (`dtype`: the autocast dtype, None for fp32); nan when that precision was not measured."""
    peak = peaks.get(precision_name(dtype))
    return samples_per_s * flops_per_sample / peak if peak else math.nan


def matmul_text(peaks: dict[str, float | None], prefix: str = "") -> str:
    """`matmul_fp32_gflops=… matmul_bf16_gflops=…` (na where not native; fp16 only where measured), for a
    RESULT line; `prefix` (e.g. 'cuda_') names another device's figures."""
    keys = ["fp32", "bf16"] + (["fp16"] if peaks.get("fp16") else [])
    return " ".join(f"{prefix}matmul_{k}_gflops=" + ("na" if peaks.get(k) is None else f"{peaks[k] / 1e9:.1f}")
                    for k in keys)
