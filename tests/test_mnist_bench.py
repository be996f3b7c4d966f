"""bench/mnist_bench.py runs end to end on tiny synthetic MNIST and ends with its RESULT line."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import torch

from labkit.data.mnist import write_synthetic_mnist
from labkit.data.tensor_loader import single_thread_on_cpu

BENCH = Path(__file__).resolve().parent.parent / "bench" / "mnist_bench.py"


def test_bench_quick_run_prints_both_tables_and_result(capsys, monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("mnist_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)
    root = write_synthetic_mnist(tmp_path, n_train=300, n_test=100)
    with single_thread_on_cpu(torch.device("cpu")):  # tiny sizes: robust to a busy CI machine
        assert bench.main(["--quick", "--data", str(root), "--steps", "1", "--batch", "16"]) == 0
    out = capsys.readouterr().out
    assert "| reference | 1 |" in out and "| labkit | 1 |" in out
    assert "labkit TensorLoader" in out and "torchvision DataLoader" in out
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(r"RESULT ratio=([\d.]+) acc=([\d.]+)", last)
    assert match and float(match.group(1)) > 0 and 0 <= float(match.group(2)) <= 100
