"""Device choice, seeding and RNG state (as plain types, so checkpoints load with `weights_only=True`)."""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labkit.errors import SetupError

_KNOWN = ("cuda", "mps", "cpu")


def available_devices() -> list[str]:
    """What this machine can train on, e.g. ['cuda', 'cuda:0', 'cuda:1', 'cpu']."""
    cuda = ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))] if torch.cuda.is_available() else []
    return [*cuda, *(["mps"] if _mps_available() else []), "cpu"]


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def pick_device(preference: str | torch.device | None = None) -> torch.device:
    """The device to train on: the argument, else `LABKIT_DEVICE`, else cuda > mps > cpu; a requested device
    that is not here is a `SetupError` listing those that are."""
    env = os.environ.get("LABKIT_DEVICE") or None
    preference = env if preference is None else preference
    source = "LABKIT_DEVICE" if env is not None and str(preference) == env else "--device"
    if preference is not None:
        here = f"Available here: {', '.join(available_devices())}."
        try:
            device = torch.device(preference)
        except RuntimeError as err:
            raise SetupError(f"{source} {str(preference)!r} is not a device: use one of {', '.join(_KNOWN)} "
                             f"(e.g. cuda:1). {here}") from err
        if device.type not in _KNOWN:
            raise SetupError(f"{source} {str(device)!r} is not a device labkit trains on: use one of "
                             f"{', '.join(_KNOWN)}. {here}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SetupError(f"{source} {str(device)!r}: CUDA is not available here (no NVIDIA GPU, or a CPU-only "
                             f"PyTorch build). {here} Use --device cpu, or unset LABKIT_DEVICE.")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise SetupError(f"{source} {str(device)!r}: only {torch.cuda.device_count()} GPU(s) exist. {here}")
        if device.type == "mps" and not _mps_available():
            raise SetupError(f"{source} 'mps': Apple's MPS backend is not available here. {here}")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (the CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def prepare_model(model: torch.nn.Module, device: torch.device, channels_last: bool = False,
                  compile: bool = False) -> torch.nn.Module:
    """Move `model` to `device` (in place, and returned); `channels_last`: 4-D weights channels_last on CUDA and CPU
    (faster convolutions); `compile` on CUDA only (a CPU gained nothing). `model.compile()` keeps state_dict keys."""
    model.to(device)
    if channels_last and device.type in ("cuda", "cpu"):
        model.to(memory_format=torch.channels_last)
    if compile and device.type == "cuda":
        model.compile()
    return model


def cpu_bf16_native() -> bool:
    """Whether this CPU runs bf16 matmuls and convolutions in hardware (AVX-512 BF16 or AMX, through oneDNN; elsewhere
    bf16 is emulated, slower than fp32). `LABKIT_CPU_BF16=0`/`1` overrides the check."""
    forced = os.environ.get("LABKIT_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return torch.backends.mkldnn.is_available() and any(check() for check in checks if check is not None)


def amp_dtype(device: torch.device, amp: bool = True) -> torch.dtype | None:
    """The autocast dtype where `device` runs mixed precision natively: bf16 on CUDA where supported, else fp16;
    bf16 on a CPU with native bf16 (`cpu_bf16_native`); None (fp32) elsewhere or when `amp` is off."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_bf16_native() else None


def describe_precision(device: torch.device, amp: bool, channels_last: bool) -> str:
    """What a run computes in: 'bf16 mixed precision, channels_last' or 'fp32 (this CPU has no native bf16)'."""
    dtype = amp_dtype(device, amp)
    what = {None: "fp32", torch.bfloat16: "bf16 mixed precision", torch.float16: "fp16 mixed precision"}[dtype]
    if amp and dtype is None:
        what += " (no native bf16 here)" if device.type == "cpu" else f" (no mixed precision on {device.type})"
    return f"{what}, {'channels_last' if channels_last and device.type != 'mps' else 'contiguous'} memory format"


def describe_device(device: str | torch.device | None = None) -> str:
    """A one-line description for notebook headers, e.g. 'cuda:0 (NVIDIA H100, 80 GB) · torch 2.4'."""
    device = device if isinstance(device, torch.device) else pick_device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props, count = torch.cuda.get_device_properties(index), torch.cuda.device_count()
        what = f"{props.name}, {props.total_memory / 2**30:.0f} GiB" + (f", {count} GPUs visible" if count > 1 else "")
        name = f"cuda:{index}"
    elif device.type == "mps":
        name, what = "mps", f"Apple GPU, {platform.machine()}"
    else:
        name, what = "cpu", f"{cpu_name()}, {torch.get_num_threads()} threads"
    return f"{name} ({what}) · torch {torch.__version__}"


def cpu_name() -> str:
    """The CPU's model ('AMD EPYC 9B14') from Linux's /proc/cpuinfo, else what `platform` knows."""
    info, fallback = Path("/proc/cpuinfo"), platform.processor() or platform.machine()
    lines = info.read_text().splitlines() if info.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), fallback)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; `deterministic=True` also asks for deterministic (slower) GPU kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def rng_state() -> dict[str, Any]:
    """Every RNG's state as plain Python types and tensors (safe for weights_only loading)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state()` captured (missing parts are left alone)."""
    if "python" in state:
        py = state["python"]
        random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "numpy" in state:
        nps = state["numpy"]
        keys = nps["keys"].numpy().astype(np.uint32)
        np.random.set_state((nps["kind"], keys, nps["pos"], nps["has_gauss"], nps["cached"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def synchronize(device: torch.device | str) -> None:
    """Wait for queued CUDA work, so a clock read after it measures the work itself."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
