"""bench/devices_bench.py wiring at toy size: a CPU measurement and the RESULT line."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
from torch import nn

BENCH = Path(__file__).resolve().parent.parent / "bench" / "devices_bench.py"


def tiny_cnn(num_classes: int) -> nn.Module:
    """A factory the bench loads by name (`tests.test_devices_bench:tiny_cnn`)."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


def _bench():
    spec = importlib.util.spec_from_file_location("devices_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_reports_cpu_images_per_second(capsys):
    _bench().main(["--quick", "--model", "tests.test_devices_bench:tiny_cnn", "--classes", "5", "--size", "16"])
    lines = capsys.readouterr().out.strip().splitlines()
    match = re.fullmatch(r"RESULT cpu=([0-9.]+) gpu1=(\S+) gpus=(\S+)", lines[-1])
    assert match, lines[-1]
    assert float(match.group(1)) > 0
    if not torch.cuda.is_available():
        assert match.group(2) == "na" and match.group(3) == "na"
    assert any(line.startswith("| CPU | 1 | 16 |") for line in lines)  # 2 quick batches of 8


def test_bad_arguments_are_refused():
    bench = _bench()
    with pytest.raises(SystemExit):
        bench.main(["--epochs", "1"])
    with pytest.raises(SystemExit, match="unknown model"):
        bench.build_model("resnet_nonexistent", 10)
