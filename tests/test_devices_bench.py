"""bench/devices_bench.py wiring at toy size: the CPU rows (one process; two gloo processes both ways: the global
batch split, and the per-device batch kept), rounds, and the RESULT line."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.bench_result import check_limit_keys

BENCH = Path(__file__).resolve().parent.parent / "bench" / "devices_bench.py"
TOY = ["--quick", "--peak-seconds", "0.1",
       "--model", "tests.test_devices_bench:tiny_cnn", "--classes", "5", "--size", "16"]
RESULT = (r"RESULT cpu=([0-9.]+) cpu_ddp_global=(\S+) cpu_ddp_per_process=(\S+) cpu_procs=(\d+) "
          r"gpu1=(\S+) gpus=(\S+) gpus_global=(\S+) peak_fraction=\S+ precision=\S+ matmul_fp32_gflops=\S+ "
          r"matmul_bf16_gflops=\S+.*")


def tiny_cnn(num_classes: int) -> nn.Module:
    """A factory the bench loads by name (`tests.test_devices_bench:tiny_cnn`)."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


def _bench():
    spec = importlib.util.spec_from_file_location("devices_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(lines: list[str], label: str) -> list[str]:
    row = next(line for line in lines if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_one_process_rounds_are_reported_with_their_spread(capsys):
    _bench().main([*TOY, "--cpu-processes", "0", "--rounds", "4"])
    lines = capsys.readouterr().out.strip().splitlines()
    match = re.fullmatch(RESULT, lines[-1])
    assert match, lines[-1]
    assert float(match.group(1)) > 0
    assert match.group(2) == match.group(3) == "na" and match.group(4) == "0"
    check_limit_keys(lines[-1])
    if not torch.cuda.is_available():
        assert match.group(5) == match.group(6) == match.group(7) == "na"
    cells = _row(lines, "CPU, 1 process")
    assert cells[1:5] == ["1", "8", "8", "16"]  # 1 process, batch 8, global 8, 2 quick batches a round
    low, mid, high = (float(v) for v in cells[5].split(" / "))
    assert 0 < low <= mid <= high and float(match.group(1)) == pytest.approx(mid, abs=0.06)
    assert cells[6] == "1.00x"


def test_the_one_process_rounds_bracket_the_launch(monkeypatch):
    bench = _bench()
    calls = []
    monkeypatch.setattr(bench, "run_ddp", lambda args, count, device: calls.append(("launch", count)) or {})
    original = bench.measure_one

    def one(args, device, batches, rounds, batch):
        calls.append(("one", rounds))
        return original(args, device, batches, rounds, batch)

    monkeypatch.setattr(bench, "measure_one", one)
    args = argparse.Namespace(model="tests.test_devices_bench:tiny_cnn", classes=3, size=8, rounds=5, amp=False)
    result, launched = bench.bracketed(args, "cpu", 2, batches=2, batch=4)
    assert calls == [("one", 3), ("launch", 2), ("one", 2)]
    assert len(result["img_per_s"]) == 5 and result["images_per_round"] == 8 and launched == {}


def test_two_gloo_processes_measure_the_global_and_the_per_device_batch(capsys):
    _bench().main([*TOY, "--cpu-processes", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    match = re.fullmatch(RESULT, lines[-1])
    assert match, lines[-1]
    assert float(match.group(2)) > 0 and float(match.group(3)) > 0 and match.group(4) == "2"
    split = _row(lines, "CPU, 2 processes (DDP gloo), global batch kept")
    kept = _row(lines, "CPU, 2 processes (DDP gloo), per-device batch kept")
    assert split[1:5] == ["2", "4", "8", "16"]  # batch 8 split over 2 processes
    assert kept[1:5] == ["2", "8", "16", "32"]  # 8 per process, 16 global
    assert len(split[5].split(" / ")) == 3
    assert any(line.startswith("CPU, 2 processes: keeping the per-device batch gives") for line in lines)


def test_bad_arguments_are_refused():
    bench = _bench()
    with pytest.raises(SystemExit):
        bench.main(["--rounds", "0"])
    with pytest.raises(SystemExit):
        bench.main(["--cpu-processes", "1"])
    with pytest.raises(SystemExit):
        bench.main([*TOY, "--cpu-batch", "7", "--cpu-processes", "2"])  # does not split over 2
    with pytest.raises(SystemExit, match="unknown model"):
        bench.build_model("resnet_nonexistent", 10)
