"""bench/tiny_bench.py runs end to end (tiny synthetic data) and ends with its RESULT line."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from labkit.data.tiny_imagenet import write_synthetic_tiny_imagenet

BENCH = Path(__file__).resolve().parent.parent / "bench" / "tiny_bench.py"


def test_bench_quick_run_prints_the_table_and_result(capsys, monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("tiny_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)
    spec.loader.exec_module(bench)
    root = write_synthetic_tiny_imagenet(tmp_path, n_classes=3, n_train_per_class=8, n_val_per_class=2)
    assert bench.main(["--quick", "--data", str(root), "--batch", "8", "--workers", "0", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "cache build" in out and "pipeline alone" in out and "waiting for data" in out
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(r"RESULT ratio=([\d.]+) train_ratio=([\d.]+) val_top5=na label_check=na", last)
    assert match and float(match.group(1)) > 0 and float(match.group(2)) > 0


def test_label_mapping_check_trains_the_lab_through_the_runner(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("tiny_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)
    spec.loader.exec_module(bench)
    monkeypatch.setitem(bench.CHECK, "width", 4)
    monkeypatch.setitem(bench.CHECK, "epochs", 2)
    monkeypatch.setitem(bench.CHECK, "batch_size", 8)
    root = write_synthetic_tiny_imagenet(tmp_path, n_classes=3, n_train_per_class=8, n_val_per_class=2)
    result = bench.label_mapping_check(root, tmp_path / "cache", seconds=120)
    assert result["epochs"] == 2 and 0.0 <= result["val_top5"] <= 1.0 and result["prepare_seconds"] > 0
    assert list((tmp_path / "cache" / "cache").glob("tiny-imagenet-train-*.pt")), "the cache was not built fresh"
