"""The CPU fast path: channels_last for convolutions on a CPU, bf16 autocast only where the CPU runs bf16
natively (never emulated), and a run's first line saying which."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from labkit import device, runner
from labkit.engine import Trainer
from tests.test_lab_core import blobs  # noqa: F401  (the documented toy lab, as a fixture)

CPU = torch.device("cpu")


@pytest.mark.parametrize("forced, dtype", [("1", torch.bfloat16), ("0", None)])
def test_amp_on_a_cpu_is_bf16_only_where_bf16_is_native(monkeypatch, forced, dtype):
    monkeypatch.setenv("LABKIT_CPU_BF16", forced)
    assert device.cpu_bf16_native() is (forced == "1")
    assert device.amp_dtype(CPU, amp=True) is dtype
    assert device.amp_dtype(CPU, amp=False) is None  # --no-amp: fp32 whatever the CPU
    text = device.describe_precision(CPU, amp=True, channels_last=True)
    assert text == ("bf16 mixed precision" if dtype else "fp32 (no native bf16 here)") + ", channels_last memory format"
    assert device.describe_precision(CPU, amp=False, channels_last=False) == "fp32, contiguous memory format"


def test_the_native_check_follows_the_cpu_flags(monkeypatch):
    monkeypatch.delenv("LABKIT_CPU_BF16", raising=False)
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.exists() else []
    if not flags:
        pytest.skip("no /proc/cpuinfo to compare with")
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert device.cpu_bf16_native() is (native and torch.backends.mkldnn.is_available())


def test_a_cpu_trainer_runs_convolutions_channels_last_under_bf16_autocast(monkeypatch):
    monkeypatch.setenv("LABKIT_CPU_BF16", "1")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 4))
    seen = {}
    model[0].register_forward_hook(lambda m, i, o: seen.update(dtype=o.dtype, cl=i[0].is_contiguous(
        memory_format=torch.channels_last)))
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), device="cpu", amp=True, channels_last=True)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)  # the weights, and the inputs:
    batches = [(torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))) for _ in range(3)]
    trainer.train_one_epoch(batches)
    assert seen == {"dtype": torch.bfloat16, "cl": True}
    assert model[0].weight.dtype == torch.float32  # autocast: the weights stay fp32 (mixed, not half, precision)


def test_a_run_says_its_precision_first(blobs, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("LABKIT_CPU_BF16", "0")
    cfg = blobs.config("laptop", out=str(tmp_path / "r"), epochs=1, tensorboard=False)
    runner.run(blobs, cfg, estimate=False)
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "computing in fp32 (no native bf16 here), channels_last memory format on cpu", first
