"""bench/cifar_bench.py runs end to end (tiny sizes) and ends with its RESULT line."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "cifar_bench.py"


def test_bench_quick_run_prints_the_table_and_result(capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("cifar_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--images", "320", "--batch", "16", "--workers", "0", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "synthetic CIFAR-10" in out and "pipeline alone" in out and "waiting for data" in out
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(r"RESULT ratio=([\d.]+) train_ratio=([\d.]+)( cuda_train_ratio=[\d.]+)?", last)
    assert match and float(match.group(1)) > 0 and float(match.group(2)) > 0
