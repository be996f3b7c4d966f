"""GPU check: every lab's smoke run on CUDA, resume vs an uninterrupted run, training throughput at real sizes, DDP.

One command for the first session that has a GPU: at most about 8 minutes on one A100/H100-class GPU
(the estimate is printed first; a time budget skips the optional compiled groups that would overrun
it), `--quick` about 6. It prints a markdown table per check as it goes and ends with one `RESULT`
line; `--report FILE.md` also saves the tables and the line (and FILE.json, every figure).

1. smoke: every lab's smoke config on CUDA with AMP and channels_last
   (`get_lab(name).config("smoke", device="cuda", amp=True, channels_last=True, out=...)`, then
   `runner.run` and the lab's `report`): ok / failed with the error's first line, seconds, the lab's
   main metric (the first final-split metric, else the best validation value, else the train loss).
2. resume: a lab's smoke run for N epochs against the same run stopped after N/2 epochs (planned
   for N, so length-shaped schedules are the same) and resumed from its `last.pt` to N
   (`runner.run(..., resume=ckpt)`). Final train loss within a relative 1e-3, the main metric
   within a relative 1e-3 (accuracy-like metrics: 0.01 absolute, one item of a 100-item smoke
   split). Not bit-exactness: on CUDA, bf16 autocast rounding, cuDNN/cuBLAS algorithm choices and
   atomic-add reductions in some backward kernels differ between two runs of the same code in the
   last bits, and those differences grow over the epochs; a real resume bug (a lost optimizer,
   scheduler, scaler or RNG state, a shifted data order) moves the loss by percents. Whether the
   two runs were bit-identical is reported beside it.
3. throughput at the real sizes on generated data (no dataset needed), median of rounds:
   ResNet-20 on 3x32x32 and ResNet-18 (200 classes) on 3x64x64, batch 128, images/s; the
   Transformer LM (emsize/nhid 200, 2 layers, 2 heads, adaptive softmax over 33,278 words,
   bptt 35, batch 32), tokens/s. fp32 and AMP (bf16 where supported, else fp16 + GradScaler),
   contiguous and channels_last (CNNs), torch.compile off and on (its compile time is the
   "first step" column, never part of a rate). Pipelines, at the same precision and format:
     labkit    = `TensorLoader` holding the uint8 images on the GPU, batched crop+flip+normalise
                 there (the labs' `train_transform`s), `engine.fit`'s training step;
     reference = torchvision-style `Dataset` over the same uint8 tensors with per-sample
                 `transforms.v2` (RandomCrop(pad 4), RandomHorizontalFlip, ToDtype, Normalize) in
                 `DataLoader` workers, `pin_memory`, `.to(device, non_blocking=True)`, a plain loop.
   Both use the same SGD (momentum 0.9, weight decay 5e-4). Timing: warm-up steps untimed,
   `torch.cuda.synchronize()` around each timed chunk, the sides of a comparison alternated in
   rounds (order reversed every other round), the median of the rounds reported.
   The LM is measured on labkit's path only (`BpttBatches`-style windows, `LMTask`, `fit` with
   AdamW and gradient clipping); its compiled rows compile the Transformer blocks in place (the
   adaptive softmax's data-dependent cluster gathers stay eager).
4. ddp: `torchrun --standalone --nproc_per_node=1 -m labkit run function-fitting --smoke
   --device cuda --out DIR` (NCCL) in a subprocess: exit code 0 and metrics.json + last.pt
   written; with 2 or more GPUs also 2 processes.

    python bench/gpu_check.py                  # everything (<= ~8 min)
    python bench/gpu_check.py --quick          # fewer steps, compile only with AMP (~6 min)
    python bench/gpu_check.py --only smoke,ddp --out runs/gpu-check --report runs/gpu-check.md

Without CUDA it exits with status 2 and one line `gpu_check: CUDA not available: ...` on stderr:
this is never a pass. Exit status 1 when any check failed, 0 when all passed.

RESULT keys (ratios > 1 mean "faster"; `na`: not measured):
  smoke_ok=K/N              labs whose smoke run and report passed on CUDA, of the labs tried
  resume_ok=1|0             1 when every resume-checked lab matched within the tolerance
  resume_max_rel=X          the largest relative difference seen (train loss and main metric)
  resnet20_amp_img_s=X      ResNet-20, labkit path, AMP + channels_last, eager: images/s
  resnet18_amp_img_s=X      ResNet-18 at 64x64, labkit path, AMP + channels_last, eager: images/s
  lm_amp_tok_s=X            Transformer LM, labkit path, AMP, eager: tokens/s
  amp_speedup=X             geometric mean over the 3 models: labkit AMP(+channels_last) / fp32
  channels_last_speedup=X   geometric mean over the CNNs: labkit AMP channels_last / AMP contiguous
  compile_speedup=X         geometric mean over the models: labkit AMP compiled / eager
  labkit_vs_ref=X           geometric mean over the CNNs: labkit / reference, both AMP+channels_last
  labkit_amp_vs_ref_fp32=X  geometric mean over the CNNs: labkit AMP+channels_last / reference fp32
                            contiguous (NOT the same precision: what switching a course script gives)
  peak_fraction=X           ResNet-20's labkit training FLOP/s (AMP + channels_last, eager; FLOPs per image
                            counted by FlopCounterMode) / the GPU's 2048x2048 matmul FLOP/s in that precision
  precision=fp32|bf16|fp16  what that AMP row computed in
  matmul_fp32_gflops=X, matmul_bf16_gflops=X, matmul_fp16_gflops=X   the GPU's matmul GFLOP/s (na: not native)
  ddp_ok=1|0                the 1-process NCCL torchrun run passed
  ddp2_ok=1|0|na            the 2-process run passed (na: fewer than 2 GPUs)
  failed=N                  checks that failed (lab smoke runs, resume labs, throughput rows, DDP)
  seconds=X                 the whole run's wall time
  device="NAME"             the GPU's name
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # run from a checkout without installing labkit
    sys.path.insert(0, str(_REPO))
sys.path.insert(0, str(_REPO / "bench"))  # bench/throughput.py
os.environ.setdefault("MPLBACKEND", "Agg")  # the labs' reports draw figures; no display here

import torch
from throughput import (
    endless,
    matmul_flops,
    peak_fraction,
    precision_name,
    synchronize,
    training_flops,
)
from torch import nn

from labkit.callbacks import Callback, Progress
from labkit.device import amp_dtype
from labkit.tables import markdown_table

SECTIONS = ("smoke", "resume", "throughput", "ddp")
RESUME_LABS = ("function-fitting", "mnist")  # an MLP (full batch) and a CNN lab (channels_last, cuDNN)
DDP_LAB = "function-fitting"
REL_TOL = 1e-3
ACCURACY_ABS_TOL = 0.01
BUDGET_S = 480.0


# --- sizes and the time estimate ---------------------------------------------------------------

@dataclass(frozen=True)
class Sizes:
    """How much each throughput side runs, and the shapes (the real ones by default)."""

    warmup: int = 20          # untimed steps per side (cuDNN choice, compile, allocator, workers)
    steps: int = 30           # timed steps per side per round
    rounds: int = 3
    cnn_batch: int = 128
    images: int = 10_240      # generated training images per CNN (80 batches of 128)
    lm_batch: int = 32
    bptt: int = 35
    vocab: int = 33_278       # WikiText-2's vocabulary
    lm_dim: int = 200         # emsize = nhid
    compile_groups: tuple[bool, ...] = (True, False)   # compile with AMP, then (if time is left) fp32


REAL = Sizes()
QUICK = Sizes(warmup=10, steps=15, rounds=2, compile_groups=(True,))
#: seconds on a CPU: for the tests (`main(..., _test_device="cpu")` and the functions below)
TINY = Sizes(warmup=1, steps=2, rounds=1, cnn_batch=4, images=16, lm_batch=2, bptt=5, vocab=200,
             lm_dim=16, compile_groups=())

#: rough per-step milliseconds and compile seconds on an A100/H100-class GPU, for the estimate and
#: the time budget (the reference is often CPU-bound: counted twice)
STEP_MS = {"resnet20": 8.0, "resnet18": 12.0, "lm": 8.0}
COMPILE_S = {"resnet20": 45.0, "resnet18": 60.0, "lm": 40.0}
SMOKE_S, RESUME_S, DDP_S, SETUP_S = 20.0, 25.0, 30.0, 5.0


def case_seconds(case: Case, sizes: Sizes) -> float:
    """Rough seconds one side costs: its steps, and its compile."""
    steps = sizes.warmup + sizes.rounds * sizes.steps
    ms = STEP_MS[case.model] * (2 if case.pipeline == "reference" else 1)
    return steps * ms / 1000 + (COMPILE_S[case.model] if case.compiled else 0.0)


def estimate_seconds(sections: Sequence[str], sizes: Sizes, labs: Sequence[str],
                     resume_labs: Sequence[str], gpus: int, compile_on: bool = True,
                     budget: float | None = None) -> tuple[float, list[str]]:
    """(rough total seconds, the optional groups expected not to fit the budget) for the header, on an
    A100/H100-class GPU (slower GPUs take longer; the budget is applied to the measured time)."""
    total = SETUP_S
    if "smoke" in sections:
        total += SMOKE_S * len(labs)
    if "resume" in sections:
        total += RESUME_S * len(resume_labs)
    if "ddp" in sections:
        total += DDP_S * (2 if gpus >= 2 else 1)
    skipped: list[str] = []
    if "throughput" in sections:
        seen: set[Case] = set()
        for group in plan(sizes, compile_on):
            cost = SETUP_S if not group.optional else 0.0
            for case in group.cases:
                if case in seen:  # a side measured again in a later group: its timed rounds only
                    ms = STEP_MS[case.model] * (2 if case.pipeline == "reference" else 1)
                    cost += sizes.rounds * sizes.steps * ms / 1000
                else:
                    cost += case_seconds(case, sizes)
            if group.optional and budget is not None and total + cost > budget:
                skipped.append(group.name)
                continue
            seen.update(group.cases)
            total += cost
    return total, skipped


class Budget:
    """Wall-clock budget of the whole run: optional work (compiled rows) is skipped when it would
    not fit."""

    def __init__(self, seconds: float | None, started: float | None = None) -> None:
        self.seconds = seconds
        self.started = time.perf_counter() if started is None else started

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def allows(self, estimate: float) -> bool:
        return self.seconds is None or self.elapsed() + estimate <= self.seconds


# --- small helpers -------------------------------------------------------------------------------

def first_line(err: BaseException, limit: int = 200) -> str:
    """`Type: first line of the message`, short enough for a table cell."""
    text = str(err).strip().splitlines()
    line = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def cuda_unavailable_reason() -> str | None:
    """None when CUDA can be used here, else why not (one line)."""
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return f"this PyTorch build has no CUDA support (torch {torch.__version__})"
    if torch.cuda.is_available():
        return None
    try:
        torch.cuda.init()
    except Exception as err:  # noqa: BLE001 - any failure is the reason, e.g. "Found no NVIDIA driver ..."
        return first_line(err)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
    return f"torch.cuda.is_available() is False (torch {torch.__version__}, CUDA {torch.version.cuda}{where})"


def cuda_healthy(device: torch.device) -> bool:
    """False when the CUDA context is broken (a device-side assert, an illegal address): every later
    CUDA call would fail too, so the remaining checks are skipped instead of reported as failures."""
    if device.type != "cuda":
        return True
    try:
        torch.cuda.synchronize(device)
        return torch.ones(1, device=device).add_(1).item() == 2.0
    except Exception:  # noqa: BLE001 - whatever a broken context raises, it is broken
        return False


def geomean(values: Iterable[float | None]) -> float | None:
    """Geometric mean of the values that were measured (None when none was)."""
    kept = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, kept)) / len(kept)) if kept else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def rel_diff(a: float, b: float) -> float:
    """|a - b| relative to the larger magnitude (0 for equal values, inf when one is not finite)."""
    if a == b:
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers with `digits` significant figures (thousands separated), '' for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 10 ** digits:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


_TOKEN = re.compile(r"[A-Za-z0-9_./:+-]+")


def format_value(value: Any) -> str:
    """One RESULT value: na for None, 1/0 for booleans, plain numbers, quoted text with spaces."""
    if value is None:
        return "na"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "na"
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:.0f}"
        if abs(value) >= 0.01:
            return f"{value:.3g}"
        return f"{value:.2g}"
    text = str(value)
    return text if _TOKEN.fullmatch(text) else json.dumps(text)


def format_result(values: dict[str, Any]) -> str:
    """`RESULT key=value ...` in the order of `values`."""
    for key in values:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            raise ValueError(f"RESULT key {key!r} must be lower-case letters, digits and underscores")
    return "RESULT " + " ".join(f"{k}={format_value(v)}" for k, v in values.items())


def main_metric(lab: Any, run: Any) -> tuple[str, float | None]:
    """The figure a lab's run is judged by: its first final-split metric (e.g. test_accuracy), else its
    best validation value, else its final train loss."""
    summary = run.summary()
    for split in lab.final_splits:
        for name in (*lab.metrics, "loss"):
            key = f"{split}_{name}"
            if key in summary:
                return key, float(summary[key])
    if lab.monitor and f"best_{lab.monitor}" in summary:
        return f"best_{lab.monitor}", float(summary[f"best_{lab.monitor}"])
    if "train_loss" in summary:
        return "train_loss", float(summary["train_loss"])
    return "", None


def metric_tolerance(name: str, value: float, rel_tol: float = REL_TOL) -> float:
    """Allowed |whole - resumed| for a metric: rel_tol x |value|; accuracy-like metrics (a count of
    items over a small smoke split) 0.01 absolute, one item in a hundred."""
    if "accuracy" in name or "top" in name:
        return max(ACCURACY_ABS_TOL, rel_tol * abs(value))
    return rel_tol * abs(value)


class LabUnavailable(LookupError):
    """A lab name that no package under labkit/labs registers."""


def load_lab(name: str) -> Any:
    """`get_lab(name)`, with a clear error for a name no lab package registers."""
    from labkit.errors import UsageError
    from labkit.lab import get_lab

    try:
        return get_lab(name)
    except UsageError as err:
        raise LabUnavailable(f"no lab package registers a lab named {name!r} ({err})") from err


# --- 1. smoke ------------------------------------------------------------------------------------

@dataclass
class SmokeResult:
    lab: str
    ok: bool
    status: str
    seconds: float
    metric: str = ""
    value: float | None = None


def smoke_one(name: str, device: str, out: Path) -> SmokeResult:
    """One lab's smoke config on `device` (AMP and channels_last on), `runner.run`, then its report."""
    from labkit import runner

    start = time.perf_counter()
    stage = "config"
    try:
        lab = load_lab(name)
        cfg = lab.config("smoke", device=device, out=str(out), amp=True, channels_last=True)
        stage = "run"
        run = runner.run(lab, cfg, progress=False)
        if run.history.diverged:
            return SmokeResult(name, False, f"failed: diverged ({run.history.stop_reason[:120]})",
                               time.perf_counter() - start)
        metric, value = main_metric(lab, run)
        stage = "report"
        lab.report(run)
    except Exception as err:  # noqa: BLE001 - a failing lab is a result of the check, not its end
        return SmokeResult(name, False, f"failed ({stage}): {first_line(err)}", time.perf_counter() - start)
    finite = value is None or math.isfinite(value)
    return SmokeResult(name, finite, "ok" if finite else f"failed: {metric} is {value}",
                       time.perf_counter() - start, metric, value)


def smoke_check(labs: Sequence[str], device: str, out: Path) -> list[SmokeResult]:
    """Every lab in `labs` at smoke size on `device`; stops early if the CUDA context breaks."""
    results: list[SmokeResult] = []
    for name in labs:
        print(f"[smoke] {name} ...", flush=True)
        result = smoke_one(name, device, out / name)
        print(f"[smoke] {name}: {result.status} ({result.seconds:.1f} s)", flush=True)
        results.append(result)
        if not result.ok and not cuda_healthy(torch.device(device)):
            for rest in labs[len(results):]:
                results.append(SmokeResult(rest, False, f"skipped: CUDA context broken by {name}", 0.0))
            break
    return results


def smoke_table(results: Sequence[SmokeResult]) -> str:
    rows = [(r.lab, r.status, r.metric, fmt(r.value, 4), f"{r.seconds:.1f}") for r in results]
    return markdown_table(("lab", "status", "main metric", "value", "seconds"), rows, numeric_from=3)


# --- 2. resume -----------------------------------------------------------------------------------

class StopAfterEpoch(Callback):
    """Stop a run after `epoch` epochs (the run stays planned for all of them: same schedule)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state: Any) -> None:
        if state.epoch >= self.epoch:
            state.stop = True


@dataclass
class ResumeResult:
    lab: str
    ok: bool
    status: str
    epochs: int = 0
    stopped_at: int = 0
    whole_loss: float | None = None
    resumed_loss: float | None = None
    loss_rel: float | None = None
    metric: str = ""
    whole_metric: float | None = None
    resumed_metric: float | None = None
    metric_rel: float | None = None
    exact: bool | None = None        # whole and resumed identical to the last bit
    seconds: float = 0.0
    skipped: bool = False            # the lab is not available here (the smoke check reports that)

    @property
    def max_rel(self) -> float | None:
        values = [v for v in (self.loss_rel, self.metric_rel) if v is not None]
        return max(values) if values else None


def resume_check(name: str, device: str, out: Path, rel_tol: float = REL_TOL,
                 epochs: int | None = None) -> ResumeResult:
    """Whole run of N epochs vs the same run stopped after N/2 and resumed from its last.pt to N."""
    from labkit import runner

    start = time.perf_counter()
    try:
        lab = load_lab(name)
    except LabUnavailable as err:
        return ResumeResult(name, True, f"skipped: {err}", skipped=True)
    except Exception as err:  # noqa: BLE001 - a failing lab is a result of the check, not its end
        return ResumeResult(name, False, f"failed: {first_line(err)}")
    try:
        extra = {"epochs": epochs} if epochs else {}
        cfg = lab.config("smoke", device=device, out=str(out / "whole"), tensorboard=False, amp=True,
                         channels_last=True, **extra)
        if cfg.epochs < 2:
            cfg = cfg.replace(epochs=2)
        whole = runner.run(lab, cfg, progress=False)
        ran = whole.history.epoch[-1] if len(whole.history) else 0
        half = ran // 2
        if half < 1:
            return ResumeResult(name, False, f"failed: the whole run trained {ran} epoch(s), too few to split",
                                cfg.epochs, seconds=time.perf_counter() - start)
        part_cfg = cfg.replace(out=str(out / "resumed"))
        part = runner.run(lab, part_cfg, callbacks=[StopAfterEpoch(half)], progress=False)
        if part.history.epoch[-1] != half or part.last_checkpoint is None:
            return ResumeResult(name, False, f"failed: the first half stopped at epoch {part.history.epoch[-1]}"
                                f" (wanted {half}) or wrote no last.pt", cfg.epochs, half,
                                seconds=time.perf_counter() - start)
        resumed = runner.run(lab, part_cfg, resume=part.last_checkpoint, progress=False)
    except Exception as err:  # noqa: BLE001 - a failing lab is a result of the check, not its end
        return ResumeResult(name, False, f"failed: {first_line(err)}", seconds=time.perf_counter() - start)

    result = ResumeResult(name, True, "ok", cfg.epochs, half, seconds=time.perf_counter() - start)
    problems = []
    if resumed.history.epoch != whole.history.epoch:
        problems.append(f"epochs {resumed.history.epoch[:1]}..{resumed.history.epoch[-1:]} vs "
                        f"{whole.history.epoch[:1]}..{whole.history.epoch[-1:]}")
    result.whole_loss = float(whole.history.last("train_loss"))
    result.resumed_loss = float(resumed.history.last("train_loss"))
    result.loss_rel = rel_diff(result.whole_loss, result.resumed_loss)
    if result.loss_rel > rel_tol:
        problems.append(f"train loss differs by {result.loss_rel:.2g} (> {rel_tol:g})")
    result.metric, result.whole_metric = main_metric(lab, whole)
    _, result.resumed_metric = main_metric(lab, resumed)
    if result.whole_metric is not None and result.resumed_metric is not None:
        result.metric_rel = rel_diff(result.whole_metric, result.resumed_metric)
        allowed = metric_tolerance(result.metric, result.whole_metric, rel_tol)
        if not abs(result.whole_metric - result.resumed_metric) <= allowed:
            problems.append(f"{result.metric} differs by {abs(result.whole_metric - result.resumed_metric):.3g}"
                            f" (> {allowed:.3g})")
    result.exact = resumed.history["train_loss"] == whole.history["train_loss"] and (
        result.whole_metric == result.resumed_metric)
    if problems:
        result.ok, result.status = False, "failed: " + "; ".join(problems)
    return result


def resume_table(results: Sequence[ResumeResult], rel_tol: float = REL_TOL) -> str:
    rows = [(r.lab, r.status, r.metric, fmt(r.exact), r.epochs or "", r.stopped_at or "", fmt(r.whole_loss, 6),
             fmt(r.resumed_loss, 6), fmt(r.loss_rel, 2), fmt(r.whole_metric, 6), fmt(r.resumed_metric, 6),
             fmt(r.metric_rel, 2), f"{r.seconds:.1f}") for r in results]
    header = ("lab", "status", "metric", "bit-exact", "epochs", "stopped at", "train loss (whole)",
              "train loss (resumed)", "rel diff", "metric (whole)", "metric (resumed)", "rel diff", "seconds")
    return (markdown_table(header, rows, numeric_from=4)
            + f"\n\n(tolerance: relative {rel_tol:g}; accuracy-like metrics {ACCURACY_ABS_TOL:g} absolute)")


# --- 3. throughput -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One throughput configuration."""

    model: str            # resnet20 | resnet18 | lm
    pipeline: str         # labkit | reference
    amp: bool
    channels_last: bool
    compiled: bool

    @property
    def precision(self) -> str:
        return "AMP" if self.amp else "fp32"

    @property
    def memory(self) -> str:
        if self.model == "lm":
            return "-"
        return "channels_last" if self.channels_last else "contiguous"

    @property
    def unit(self) -> str:
        return "tokens/s" if self.model == "lm" else "images/s"


@dataclass(frozen=True)
class Group:
    """Sides measured together (alternated in rounds); `optional` groups run only if time is left."""

    name: str
    cases: tuple[Case, ...]
    optional: bool = False


CNNS = ("resnet20", "resnet18")
MODELS = (*CNNS, "lm")


def plan(sizes: Sizes, compile_on: bool = True) -> list[Group]:
    """What is measured, in order: every model eager (CNNs: both pipelines x fp32/AMP x contiguous/
    channels_last; the LM: fp32/AMP), then compiled vs eager with AMP, then (time allowing) fp32."""
    groups = []
    for model in CNNS:
        groups.append(Group(f"{model} eager", tuple(
            Case(model, pipeline, amp, cl, False)
            for amp in (False, True) for cl in (False, True) for pipeline in ("reference", "labkit"))))
    groups.append(Group("lm eager", tuple(Case("lm", "labkit", amp, False, False) for amp in (False, True))))
    if compile_on:
        for amp in sizes.compile_groups:
            for model in MODELS:
                cl = amp and model != "lm"
                groups.append(Group(f"{model} compile {'AMP' if amp else 'fp32'}", (
                    Case(model, "labkit", amp, cl, False), Case(model, "labkit", amp, cl, True)), optional=True))
    return groups


class StepLimit(Callback):
    """Stop `fit` inside its epoch after `steps` optimizer steps; `done` counts them."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.done = 0

    def on_step_end(self, state: Any) -> None:
        self.done = state.step
        if state.step >= self.steps:
            state.stop = True


class Side:
    """One live configuration: a model, its optimizer and its batches; `timed(steps)` runs and times."""

    def __init__(self, case: Case, device: torch.device, items_per_step: int) -> None:
        self.case = case
        self.device = device
        self.items_per_step = items_per_step
        self.first_step_s: float | None = None
        self.waited = 0.0

    def run(self, steps: int) -> None:
        raise NotImplementedError

    def timed(self, steps: int) -> tuple[float, float]:
        """(seconds, seconds waiting for data) of `steps` steps, CUDA work included."""
        synchronize(self.device)
        waited = self.waited
        start = time.perf_counter()
        self.run(steps)
        synchronize(self.device)
        return time.perf_counter() - start, self.waited - waited

    def warm(self, steps: int) -> None:
        """The untimed warm-up; the first step's time (with the compile, for compiled sides) is kept."""
        self.first_step_s, _ = self.timed(1)
        if steps > 1:
            self.timed(steps - 1)


class LabkitSide(Side):
    """labkit's path: batches from a device-resident loader, `engine.fit`'s step (AMP and channels_last
    by the engine's rules)."""

    def __init__(self, case: Case, device: torch.device, items_per_step: int, model: nn.Module,
                 optimizer: torch.optim.Optimizer, loader: Any, task: Any = None,
                 grad_clip: float | None = None) -> None:
        super().__init__(case, device, items_per_step)
        self.model, self.optimizer, self.loader = model, optimizer, loader
        self.task, self.grad_clip = task, grad_clip

    def run(self, steps: int) -> None:
        from labkit.engine import fit

        if len(self.loader) < steps:
            raise ValueError(f"the loader has {len(self.loader)} batches, fewer than {steps} steps")
        limit = StepLimit(steps)
        fit(self.model, self.loader, epochs=1, optimizer=self.optimizer, task=self.task, device=self.device,
            amp=self.case.amp, channels_last=self.case.channels_last, grad_clip=self.grad_clip,
            callbacks=[limit, Progress(False)])
        if limit.done != steps:
            raise RuntimeError(f"fit ran {limit.done} steps, not {steps}")


class ReferenceSide(Side):
    """The reference: batches from a CPU DataLoader (pinned), moved with non_blocking, a plain loop."""

    def __init__(self, case: Case, device: torch.device, items_per_step: int, model: nn.Module,
                 optimizer: torch.optim.Optimizer, stream: Iterator) -> None:
        from labkit.device import amp_dtype

        super().__init__(case, device, items_per_step)
        self.model, self.optimizer, self.stream = model, optimizer, stream
        self.dtype = amp_dtype(device, case.amp)  # bf16 where supported, else fp16; None on a CPU
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.channels_last = case.channels_last and device.type == "cuda"
        self.loss_fn = nn.CrossEntropyLoss()

    def run(self, steps: int) -> None:
        self.model.train()
        for _ in range(steps):
            asked = time.perf_counter()
            images, labels = next(self.stream)
            self.waited += time.perf_counter() - asked
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                loss = self.loss_fn(self.model(images), labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()


class PerSampleDataset(torch.utils.data.Dataset):
    """torchvision-style: (transform(image), label) one item at a time, from uint8 tensors."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[index]), self.labels[index]


def shm_free_bytes() -> int | None:
    """Free bytes of /dev/shm, where DataLoader workers hand their batches over (None: unknown)."""
    try:
        return shutil.disk_usage("/dev/shm").free
    except OSError:
        return None


def worker_settings(workers: int, batch_bytes: int, shm_free: int | None) -> tuple[int, int]:
    """(workers, prefetch_factor) whose batches in flight (workers x prefetch) take at most a quarter of
    /dev/shm's free space: a container's small /dev/shm (Docker's default is 64 MiB) would otherwise
    kill the workers with a bus error. prefetch 4 where it fits, else 2, else 1; fewer workers after."""
    if workers <= 0:
        return 0, 0
    if shm_free is None:
        return workers, 2
    room = shm_free // 4
    for prefetch in (4, 2, 1):
        if workers * prefetch * batch_bytes <= room:
            return workers, prefetch
    return max(0, min(workers, room // batch_bytes)), 1


def _cnn_spec(model: str) -> dict[str, Any]:
    from labkit.labs.cifar10 import data as cifar
    from labkit.labs.tiny_imagenet import data as tiny

    if model == "resnet20":
        from labkit.labs.cifar10.model import resnet20

        return {"size": 32, "classes": 10, "mean": cifar.MEAN, "std": cifar.STD, "build": lambda: resnet20(10),
                "transform": cifar.train_transform}
    from labkit.labs.tiny_imagenet.model import build_model

    return {"size": 64, "classes": 200, "mean": tiny.MEAN, "std": tiny.STD,
            "build": lambda: build_model("resnet18", num_classes=200), "transform": tiny.train_transform}


def reference_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> Callable:
    """The per-sample torchvision pipeline equivalent to labkit's batched one."""
    from torchvision.transforms import v2 as T

    return T.Compose([T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(), T.ToDtype(torch.float32, scale=True),
                      T.Normalize(mean, std)])


def _prepare(model: nn.Module, case: Case, device: torch.device) -> nn.Module:
    model.to(device)
    if case.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    if case.compiled:
        if case.model == "lm":  # LMTask calls model.loss(): compile the Transformer blocks in place
            for block in model.blocks:
                block.compile()
        else:
            model.compile()  # in place: the module keeps its class (fit, checkpoints see the same model)
    return model


class Bench:
    """The data and live sides of every measured configuration (built when first needed)."""

    def __init__(self, device: torch.device, sizes: Sizes, workers: int,
                 log: Callable[[str], None] = print) -> None:
        self.device, self.sizes, self.workers, self.log = device, sizes, workers, log
        self.sides: dict[Case, Side] = {}
        self._data: dict[str, dict[str, Any]] = {}
        self.loader_settings: dict[str, str] = {}  # the reference DataLoader's workers and prefetch, per CNN

    def _cnn_data(self, model: str) -> dict[str, Any]:
        if model in self._data:
            return self._data[model]
        from torch.utils.data import DataLoader

        from labkit.data.tensor_loader import TensorLoader

        spec, sizes = _cnn_spec(model), self.sizes
        n = max(sizes.images, sizes.cnn_batch * (max(sizes.warmup, sizes.steps) + 1))
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, 3, spec["size"], spec["size"]), dtype=torch.uint8, generator=gen)
        labels = torch.randint(0, spec["classes"], (n,), generator=gen)
        labkit = TensorLoader(images, labels, batch_size=sizes.cnn_batch, shuffle=True, drop_last=True,
                              device=self.device, transform=spec["transform"](), seed=0)
        dataset = PerSampleDataset(images, labels, reference_transform(spec["size"], spec["mean"], spec["std"]))
        batch_bytes = sizes.cnn_batch * 3 * spec["size"] ** 2 * 4  # float32 batches cross /dev/shm
        workers, prefetch = worker_settings(self.workers, batch_bytes, shm_free_bytes())
        options: dict[str, Any] = {}
        if workers > 0:
            options = {"persistent_workers": True, "prefetch_factor": prefetch}
            if sys.platform.startswith("linux"):
                options["multiprocessing_context"] = "fork"  # the workers never touch CUDA
        reference = DataLoader(dataset, batch_size=sizes.cnn_batch, shuffle=True, drop_last=True,
                               num_workers=workers, pin_memory=self.device.type == "cuda", **options)
        self.loader_settings[model] = f"{workers} workers, prefetch {prefetch if workers else '-'}"
        shm = shm_free_bytes()
        self.log(f"[throughput] {model} reference DataLoader: {self.loader_settings[model]}, pin_memory "
                 f"{self.device.type == 'cuda'} (/dev/shm free: {'?' if shm is None else f'{shm / 2**20:,.0f} MiB'})")
        self._data[model] = {"spec": spec, "labkit": labkit, "stream": endless(reference)}
        return self._data[model]

    def _lm_data(self) -> dict[str, Any]:
        if "lm" in self._data:
            return self._data["lm"]
        from labkit.labs.lm.data import BpttBatches

        sizes = self.sizes
        columns = sizes.bptt * (max(sizes.warmup, sizes.steps) + 2) + 1
        # a frequency-sorted vocabulary, as the adaptive softmax expects: Zipf-distributed word ids
        weights = 1.0 / torch.arange(1, sizes.vocab + 1, dtype=torch.float64)
        ids = torch.multinomial(weights, sizes.lm_batch * columns, replacement=True,
                                generator=torch.Generator().manual_seed(0))
        batches = BpttBatches(ids, sizes.lm_batch, sizes.bptt, device=self.device, drop_last=True)
        self._data["lm"] = {"batches": batches}
        return self._data["lm"]

    def side(self, case: Case) -> Side:
        if case in self.sides:
            return self.sides[case]
        torch.manual_seed(0)
        if case.model == "lm":
            self.sides[case] = self._lm_side(case)
            return self.sides[case]
        data = self._cnn_data(case.model)
        model = _prepare(data["spec"]["build"](), case, self.device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        if case.pipeline == "labkit":
            side: Side = LabkitSide(case, self.device, self.sizes.cnn_batch, model, optimizer, data["labkit"])
        else:
            side = ReferenceSide(case, self.device, self.sizes.cnn_batch, model, optimizer, data["stream"])
        self.sides[case] = side
        return side

    def _lm_side(self, case: Case) -> Side:
        from labkit.lab import LabConfig
        from labkit.labs.lm.model import build_language_model
        from labkit.labs.lm.text import LMTask
        from labkit.optim import make_optimizer

        if case.pipeline != "labkit":
            raise ValueError("the LM is measured on labkit's path only")
        sizes = self.sizes
        # the LM lab's modern recipe: dropout 0.4, AdamW (lr 2e-3, weight decay 0.1), clip 0.5
        model = build_language_model("transformer", sizes.vocab, emsize=sizes.lm_dim, nhid=sizes.lm_dim,
                                     nlayers=2, nhead=2, dropout=0.4, adaptive_softmax=True)
        model = _prepare(model, case, self.device)
        optimizer = make_optimizer(LabConfig(optimizer="adamw", lr=2e-3, weight_decay=0.1), model)
        return LabkitSide(case, self.device, sizes.lm_batch * sizes.bptt, model, optimizer,
                          self._lm_data()["batches"], task=LMTask(), grad_clip=0.5)

    def close_reference(self, model: str) -> None:
        """Stop a CNN's reference DataLoader workers (its sides are done)."""
        data = self._data.get(model)
        if data and "stream" in data:
            data["stream"].close()
            data.pop("stream")


@dataclass
class Row:
    group: str
    case: Case
    status: str
    rate: float | None = None        # median of the rounds, items/s
    spread: float | None = None      # (max - min) / median over the rounds
    wait_share: float | None = None  # reference only: share of the timed time spent in next(loader)
    first_step_s: float | None = None
    rounds: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def measure_group(bench: Bench, group: Group, budget: Budget | None = None) -> list[Row]:
    """Warm every side of the group up, then time them in alternating rounds; one Row per case."""
    sizes = bench.sizes
    rows = {case: Row(group.name, case, "ok") for case in group.cases}
    if group.optional and budget is not None:
        fresh = [case for case in group.cases if case not in bench.sides]
        if not budget.allows(sum(case_seconds(case, sizes) for case in fresh)):
            for row in rows.values():
                row.status = "skipped: time budget"
            return list(rows.values())
    live: list[Side] = []
    for case in group.cases:
        try:
            side = bench.side(case)
            if side.first_step_s is None:
                side.warm(sizes.warmup)
            live.append(side)
        except Exception as err:
            rows[case].status = f"failed: {first_line(err)}"
            if not cuda_healthy(bench.device):
                raise
            if bench.device.type == "cuda":
                torch.cuda.empty_cache()
    waits: dict[Case, list[float]] = {side.case: [0.0, 0.0] for side in live}
    for index in range(sizes.rounds):
        for side in live if index % 2 == 0 else live[::-1]:
            row = rows[side.case]
            if not row.ok:
                continue
            try:
                seconds, waited = side.timed(sizes.steps)
            except Exception as err:
                row.status = f"failed: {first_line(err)}"
                if not cuda_healthy(bench.device):
                    raise
                continue
            row.rounds.append(sizes.steps * side.items_per_step / seconds)
            waits[side.case][0] += waited
            waits[side.case][1] += seconds
    for side in live:
        row = rows[side.case]
        row.first_step_s = side.first_step_s
        if row.ok and row.rounds:
            row.rate = statistics.median(row.rounds)
            row.spread = (max(row.rounds) - min(row.rounds)) / row.rate
            if side.case.pipeline == "reference":
                row.wait_share = waits[side.case][0] / waits[side.case][1]
    return [rows[case] for case in group.cases]


def throughput_check(device: str, sizes: Sizes, groups: Sequence[Group], workers: int = 0,
                     budget: Budget | None = None, log: Callable[[str], None] = print,
                     rows: list[Row] | None = None) -> list[Row]:
    """Measure the groups in order, appending to `rows` (kept if a broken CUDA context stops this with
    an exception); a CNN's reference workers stop after the last group that uses them."""
    bench = Bench(torch.device(device), sizes, workers, log)
    rows = [] if rows is None else rows
    last_reference = {}
    for index, group in enumerate(groups):
        for case in group.cases:
            if case.pipeline == "reference":
                last_reference[case.model] = index
    try:
        for index, group in enumerate(groups):
            log(f"[throughput] {group.name} ({len(group.cases)} sides) ...")
            since = time.perf_counter()
            measured = measure_group(bench, group, budget)
            rows.extend(measured)
            best = max((r.rate for r in measured if r.rate is not None), default=None)
            log(f"[throughput] {group.name}: {time.perf_counter() - since:.0f} s"
                + (f", best {fmt(best)} {group.cases[0].unit}" if best is not None else "")
                + "".join(f"; {r.case.pipeline} {r.case.precision} {r.status}" for r in measured if not r.ok))
            for model, last in last_reference.items():
                if last == index:
                    bench.close_reference(model)
    finally:
        for model in list(last_reference):
            bench.close_reference(model)
    return rows


def find_rate(rows: Sequence[Row], case: Case, group: str | None = None) -> float | None:
    for row in rows:
        if row.case == case and (group is None or row.group == group) and row.rate is not None:
            return row.rate
    return None


def limit_values(device: torch.device, rows: Sequence[Row], seconds: float = 1.5) -> dict[str, Any]:
    """The device's limit beside ResNet-20's labkit AMP + channels_last figure (fp32 eager where that row is
    missing): `peak_fraction`, its precision, and the 2048x2048 matmul GFLOP/s per precision (None: not native)."""
    peaks = matmul_flops(device, seconds)
    values: dict[str, Any] = {"peak_fraction": None, "precision": None}
    for amp in (True, False):
        rate = find_rate(rows, Case("resnet20", "labkit", amp, amp, False))
        if rate is not None:
            images = torch.randn(8, 3, 32, 32, device=device)
            per_image = training_flops(_cnn_spec("resnet20")["build"](), images,
                                       torch.randint(0, 10, (8,), device=device)) / 8
            dtype = amp_dtype(device, amp)
            values = {"peak_fraction": peak_fraction(rate, per_image, peaks, dtype), "precision": precision_name(dtype)}
            break
    return {**values, **{f"matmul_{k}_gflops": None if v is None else v / 1e9 for k, v in peaks.items()}}


def limit_text(limit: dict[str, Any]) -> str:
    matmuls = ", ".join(f"{k.split('_')[1]} {fmt(v)}" for k, v in limit.items() if k.startswith("matmul_") and v)
    return (f"2048x2048 matmul GFLOP/s: {matmuls}; ResNet-20 labkit training FLOP/s / the {limit['precision']} "
            f"matmul's: peak_fraction {fmt(limit['peak_fraction'])}")


def throughput_ratios(rows: Sequence[Row]) -> dict[str, tuple[float | None, str]]:
    """The summary ratios (> 1: faster) and what each compares."""

    def lab(model: str, amp: bool, cl: bool, compiled: bool = False, group: str | None = None) -> float | None:
        return find_rate(rows, Case(model, "labkit", amp, cl and model != "lm", compiled), group)

    def ref(model: str, amp: bool, cl: bool) -> float | None:
        return find_rate(rows, Case(model, "reference", amp, cl, False))

    out: dict[str, tuple[float | None, str]] = {}
    out["amp_speedup"] = (geomean(ratio(lab(m, True, True), lab(m, False, False)) for m in MODELS),
                          ("labkit, eager: AMP (+channels_last for the CNNs) / fp32 contiguous; geometric mean "
                           "of ResNet-20, ResNet-18, LM"))
    out["channels_last_speedup"] = (geomean(ratio(lab(m, True, True), lab(m, True, False)) for m in CNNS),
                                    "labkit, eager, AMP: channels_last / contiguous; geometric mean of the CNNs")
    out["compile_speedup"] = (
        geomean(ratio(lab(m, True, True, True, f"{m} compile AMP"), lab(m, True, True, False, f"{m} compile AMP"))
                for m in MODELS),
        "labkit, AMP: torch.compile / eager (same round-robin); geometric mean of the 3 models")
    out["labkit_vs_ref"] = (geomean(ratio(lab(m, True, True), ref(m, True, True)) for m in CNNS),
                            "labkit / reference, both AMP + channels_last, eager; geometric mean of the CNNs")
    out["labkit_amp_vs_ref_fp32"] = (
        geomean(ratio(lab(m, True, True), ref(m, False, False)) for m in CNNS),
        ("labkit AMP + channels_last / reference fp32 contiguous: NOT the same precision (what moving a course "
         "script to labkit gives); geometric mean of the CNNs"))
    for m in CNNS:
        for amp in (False, True):
            for cl in (False, True):
                name = f"{m}_{'amp' if amp else 'fp32'}_{'cl' if cl else 'contig'}_labkit_vs_ref"
                out[name] = (ratio(lab(m, amp, cl), ref(m, amp, cl)),
                             (f"{m}: labkit / reference, both {'AMP' if amp else 'fp32'} "
                              f"{'channels_last' if cl else 'contiguous'}, eager"))
    return out


def throughput_table(rows: Sequence[Row]) -> str:
    names = {"resnet20": "ResNet-20 3x32x32", "resnet18": "ResNet-18 3x64x64", "lm": "Transformer LM"}
    table_rows = []
    for r in rows:
        c = r.case
        table_rows.append((r.group, names[c.model], c.pipeline, c.precision, c.memory,
                           "on" if c.compiled else "off", r.status, c.unit, fmt(r.rate),
                           "" if r.spread is None else f"{r.spread:.1%}",
                           "" if r.wait_share is None else f"{r.wait_share:.0%}",
                           "" if r.first_step_s is None else f"{r.first_step_s:.2f}"))
    header = ("group", "model", "pipeline", "precision", "memory format", "compile", "status", "unit",
              "rate (median)", "spread", "data wait", "first step s")
    return (markdown_table(header, table_rows, numeric_from=8)
            + "\n\n(rate: median over the rounds; spread: (max - min) / median; data wait: the reference's share "
              "of the timed time spent in next(loader); first step s: the first warm-up step, with the compile "
              "for compiled rows, never part of a rate; labkit's rate includes one fit() set-up per timed chunk)")


def ratio_table(ratios: dict[str, tuple[float | None, str]]) -> str:
    rows = [(name, what, "na" if value is None else f"{value:.2f}x") for name, (value, what) in ratios.items()]
    return markdown_table(("ratio (> 1: faster)", "what is compared", "value"), rows, numeric_from=2)


# --- 4. DDP --------------------------------------------------------------------------------------

@dataclass
class DdpResult:
    processes: int
    ok: bool
    status: str
    rc: int | None = None
    seconds: float = 0.0
    outputs: str = ""
    nccl: str = ""
    note: str = ""


def ddp_command(processes: int, lab: str, device: str, out: Path) -> list[str]:
    """`torchrun --standalone --nproc_per_node=N -m labkit run LAB --smoke --device D --out OUT`
    (as `python -m torch.distributed.run`, so the venv's torchrun is used without PATH)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "labkit", "run", lab, "--smoke", "--device", device, "--out", str(out)]


def ddp_check(processes: int, device: str, out: Path, lab: str = DDP_LAB, timeout: float = 150.0) -> DdpResult:
    """Launch the lab's smoke run under torchrun; rc 0, metrics.json and last.pt, on the asked device."""
    env = {**os.environ, "LABKIT_PROGRESS": "0", "MPLBACKEND": "Agg", "NCCL_DEBUG": "VERSION",
           "PYTHONPATH": os.pathsep.join([str(_REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    try:
        proc = subprocess.run(ddp_command(processes, lab, device, out), cwd=_REPO, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return DdpResult(processes, False, f"failed: no exit within {timeout:.0f} s", None,
                         time.perf_counter() - start)
    seconds = time.perf_counter() - start
    text = proc.stdout + "\n" + proc.stderr
    nccl = re.search(r"NCCL version [^\s]+", text)
    warning = next((line.strip() for line in text.splitlines() if "Warning" in line or "WARNING" in line), "")
    metrics, last = out / "metrics.json", out / "checkpoints" / "last.pt"
    found = [p.name for p in (metrics, last) if p.is_file()]
    result = DdpResult(processes, False, "", proc.returncode, seconds, ", ".join(found) or "none",
                       nccl.group(0) if nccl else ("not seen" if device.startswith("cuda") else "-"),
                       warning[:160])
    if proc.returncode != 0:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        error = next((line for line in reversed(lines) if "Error" in line or "error" in line),
                     lines[-1] if lines else "no output")
        result.status = f"failed: exit {proc.returncode}: {error[:200]}"
        return result
    if len(found) < 2:
        result.status = "failed: metrics.json or checkpoints/last.pt missing"
        return result
    try:
        record = json.loads(metrics.read_text())
    except ValueError as err:
        result.status = f"failed: metrics.json unreadable: {first_line(err)}"
        return result
    where = str(record.get("device", ""))
    if not where.startswith(torch.device(device).type):
        result.status = f"failed: the run reports device {where!r}, not {device}"
        return result
    result.ok, result.status = True, "ok"
    return result


def ddp_table(results: Sequence[DdpResult]) -> str:
    rows = [(r.processes, r.status, r.outputs, r.nccl, r.note, "" if r.rc is None else r.rc, f"{r.seconds:.1f}")
            for r in results]
    return markdown_table(("processes", "status", "outputs", "NCCL", "first warning", "exit code", "seconds"),
                          rows, numeric_from=5)


# --- report ----------------------------------------------------------------------------------------

def describe(device: torch.device, workers: int) -> str:
    """One header line: the GPU, the software and the settings that change throughput."""
    parts = [f"torch {torch.__version__}"]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        parts.insert(0, f"{props.name} (sm_{props.major}{props.minor}, {props.total_memory / 2**30:.0f} GiB, "
                        f"{torch.cuda.device_count()} visible)")
        facts: list[tuple[str, Callable[[], str]]] = [
            ("CUDA", lambda: f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"),
            ("bf16", lambda: "yes" if torch.cuda.is_bf16_supported() else "no (fp16 + GradScaler)"),
            ("TF32 matmul",
             lambda: f"{torch.backends.cuda.matmul.allow_tf32}, cuDNN {torch.backends.cudnn.allow_tf32}"),
            ("cudnn.benchmark", lambda: str(torch.backends.cudnn.benchmark)),
        ]
        for name, fact in facts:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    parts.append(f"{name} {fact()}")
                except Exception as err:  # noqa: BLE001 - a renamed setting must not stop the check
                    parts.append(f"{name} unknown ({type(err).__name__})")
    else:
        parts.insert(0, "CPU (test mode: not a GPU check)")
    parts.append(f"{os.cpu_count()} CPUs, reference DataLoader workers {workers}")
    return "; ".join(parts)


def result_values(device_name: str, seconds: float, smoke: Sequence[SmokeResult] | None,
                  resume: Sequence[ResumeResult] | None, rows: Sequence[Row] | None,
                  ddp: Sequence[DdpResult] | None, gpus: int, limit: dict[str, Any] | None = None) -> dict[str, Any]:
    """The RESULT line's values (see the module docstring); None is printed as na."""
    values: dict[str, Any] = {}
    values["smoke_ok"] = f"{sum(r.ok for r in smoke)}/{len(smoke)}" if smoke is not None else None
    checked = [r for r in resume or () if not r.skipped]
    values["resume_ok"] = all(r.ok for r in checked) if checked else None
    rels = [r.max_rel for r in checked if r.max_rel is not None]
    values["resume_max_rel"] = max(rels) if rels else None
    ratios = throughput_ratios(rows) if rows is not None else {}
    if rows is not None:
        values["resnet20_amp_img_s"] = find_rate(rows, Case("resnet20", "labkit", True, True, False))
        values["resnet18_amp_img_s"] = find_rate(rows, Case("resnet18", "labkit", True, True, False))
        values["lm_amp_tok_s"] = find_rate(rows, Case("lm", "labkit", True, False, False))
    else:
        values.update(resnet20_amp_img_s=None, resnet18_amp_img_s=None, lm_amp_tok_s=None)
    for key in ("amp_speedup", "channels_last_speedup", "compile_speedup", "labkit_vs_ref",
                "labkit_amp_vs_ref_fp32"):
        values[key] = ratios.get(key, (None, ""))[0]
    limit = limit or {}
    for key in ("peak_fraction", "precision", "matmul_fp32_gflops", "matmul_bf16_gflops", "matmul_fp16_gflops"):
        values[key] = limit.get(key)
    one = [r for r in ddp or () if r.processes == 1]
    two = [r for r in ddp or () if r.processes == 2]
    values["ddp_ok"] = one[0].ok if one else None
    values["ddp2_ok"] = two[0].ok if two else None
    values["failed"] = (sum(not r.ok for r in smoke or ()) + sum(not r.ok for r in checked)
                        + sum(r.status.startswith("failed") for r in rows or ())
                        + sum(not r.ok for r in ddp or ()))
    values["seconds"] = round(seconds)
    values["device"] = device_name
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__[__doc__.index("RESULT keys"):])
    parser.add_argument("--quick", action="store_true",
                        help="fewer steps and rounds, compile with AMP only (about 6 minutes)")
    parser.add_argument("--only", default=",".join(SECTIONS), metavar="LIST",
                        help=f"comma-separated checks to run, of {','.join(SECTIONS)} (default all)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="keep every run's outputs (checkpoints, metrics, figures) here (default: a "
                             "temporary folder, removed at the end)")
    parser.add_argument("--report", type=Path, default=None, metavar="FILE.md",
                        help="also write the tables and the RESULT line to this file, and every figure to "
                             "the same name with .json")
    parser.add_argument("--labs", default=None, metavar="LIST", help="smoke only these labs (default: every lab)")
    parser.add_argument("--resume-labs", default=",".join(RESUME_LABS), metavar="LIST",
                        help=f"labs for the resume check (default {','.join(RESUME_LABS)}; a built-in lab not "
                             "ported to the runner yet is reported as skipped: the smoke check fails it)")
    parser.add_argument("--ddp-lab", default=DDP_LAB, help=f"lab for the torchrun check (default {DDP_LAB})")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="reference DataLoader workers (default min(8, CPUs))")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--budget", type=float, default=BUDGET_S,
                        help=f"seconds for the whole run: compiled rows that would overrun it are skipped "
                             f"(default {BUDGET_S:.0f})")
    parser.add_argument("--rel-tol", type=float, default=REL_TOL,
                        help=f"resume check: allowed relative difference (default {REL_TOL:g})")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown or not args.sections:
        parser.error(f"--only takes a comma-separated list of {', '.join(SECTIONS)}; got {args.only!r}")
    return args


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def main(argv: Sequence[str] | None = None, *, _test_device: str | None = None) -> int:
    """The command. `_test_device="cpu"` (tests only; no command-line way to it) runs the same code
    on a CPU at tiny sizes (`TINY`); without it CUDA is required."""
    args = parse_args(argv)
    if _test_device is None:
        reason = cuda_unavailable_reason()
        if reason is not None:
            print(f"gpu_check: CUDA not available: {reason}", file=sys.stderr)
            return 2
        device, sizes = torch.device("cuda"), QUICK if args.quick else REAL
        device_name = torch.cuda.get_device_name(device)
        gpus = torch.cuda.device_count()
    else:
        device, sizes, device_name, gpus = torch.device(_test_device), TINY, f"{_test_device} (test mode)", 0
    from labkit.lab import lab_names

    budget = Budget(args.budget)
    labs = _names(args.labs) or lab_names()
    resume_labs = _names(args.resume_labs) or []
    sections = args.sections
    compile_on = not args.no_compile
    keep = args.out is not None
    out = args.out if keep else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    estimate, beyond = estimate_seconds(sections, sizes, labs, resume_labs, gpus, compile_on, args.budget)
    header = [
        f"gpu_check on {describe(device, args.workers)}",
        (f"checks: {', '.join(sections)}; throughput: {sizes.warmup} warm-up steps + {sizes.rounds} rounds x "
         f"{sizes.steps} timed steps per side"),
        (f"estimated time: ~{estimate / 60:.1f} min on an A100/H100-class GPU (rough); time budget "
         f"{args.budget / 60:.1f} min: compiled groups that would overrun it are skipped"
         + (f" (expected: {', '.join(beyond)})" if beyond else "")),
    ]
    print("\n".join(header), flush=True)
    report: list[str] = ["\n".join(header) + "\n"]

    def emit(title: str, text: str, since: float) -> None:
        block = f"\n## {title} ({time.perf_counter() - since:.0f} s)\n\n{text}\n"
        print(block, flush=True)
        report.append(block)

    smoke = resume = rows = ddp = limit = None
    broken = ""
    try:
        if "smoke" in sections:
            since = time.perf_counter()
            smoke = smoke_check(labs, device.type, out / "smoke")
            emit("Smoke runs (AMP, channels_last)", smoke_table(smoke), since)
            if not cuda_healthy(device):
                broken = "the CUDA context broke during the smoke runs"
        if "resume" in sections and not broken:
            since, resume = time.perf_counter(), []
            for name in resume_labs:
                print(f"[resume] {name} ...", flush=True)
                resume.append(resume_check(name, device.type, out / "resume" / name, args.rel_tol))
                print(f"[resume] {name}: {resume[-1].status}", flush=True)
            emit("Resume equals an uninterrupted run", resume_table(resume, args.rel_tol), since)
        if "ddp" in sections and not broken:
            since, ddp = time.perf_counter(), []
            for processes in (1, 2) if gpus >= 2 else (1,):
                print(f"[ddp] {processes} process(es) ...", flush=True)
                ddp.append(ddp_check(processes, device.type, out / f"ddp{processes}", args.ddp_lab))
                print(f"[ddp] {processes}: {ddp[-1].status}", flush=True)
            command = "torchrun " + " ".join(ddp_command(1, args.ddp_lab, device.type, Path("DIR"))[3:])
            emit("torchrun (NCCL on CUDA)", f"command: `{command}`\n\n{ddp_table(ddp)}", since)
        if "throughput" in sections and not broken:
            since, rows = time.perf_counter(), []
            try:
                throughput_check(device.type, sizes, plan(sizes, compile_on), args.workers, budget, rows=rows)
            except Exception as err:  # noqa: BLE001 - the CUDA context broke: the measured rows are kept
                broken = f"throughput stopped: {first_line(err)}"
            emit("Training throughput (generated data, real sizes)", throughput_table(rows), since)
            emit("Ratios", ratio_table(throughput_ratios(rows)), since)
            if not broken:
                since, limit = time.perf_counter(), limit_values(device, rows, 0.1 if sizes is TINY else 1.5)
                emit("Against the limit", limit_text(limit), since)
    finally:
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
    if broken:
        print(f"gpu_check: {broken}; later checks skipped", file=sys.stderr)
    values = result_values(device_name, budget.elapsed(), smoke, resume, rows, ddp, gpus, limit)
    if broken:
        values["failed"] += 1
    line = format_result(values)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text("".join(report) + "\n" + line + "\n")
        args.report.with_suffix(".json").write_text(json.dumps(
            {"values": values, "smoke": [vars(r) for r in smoke or ()],
             "resume": [vars(r) for r in resume or ()], "ddp": [vars(r) for r in ddp or ()],
             "throughput": [{**vars(r), "case": vars(r.case)} for r in rows or ()]}, indent=2, default=str))
    print(line, flush=True)
    return 0 if values["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
