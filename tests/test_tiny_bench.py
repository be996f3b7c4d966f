"""bench/tiny_bench.py runs end to end (tiny synthetic data) and ends with its RESULT line; its pieces: the
tooling sides alternate with equal batches, the recipe sides differ only in their recipe, the label check."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import torch

from labkit.labs.tiny_imagenet.data import write_synthetic_tiny_imagenet
from tests.bench_result import check_limit_keys

BENCH = Path(__file__).resolve().parent.parent / "bench" / "tiny_bench.py"
RESULT = (r"RESULT tooling_ratio=([\d.]+) recipe_ratio=(\S+) pipeline_ratio=([\d.]+) val_top1=(\S+) "
          r"ref_val_top1=(\S+) val_top5=na label_check=na peak_fraction=\S+ precision=\S+ "
          r"matmul_fp32_gflops=\S+ matmul_bf16_gflops=\S+")


def _bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("tiny_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)
    spec.loader.exec_module(bench)
    return bench


def test_bench_quick_run_prints_both_questions_and_the_result(capsys, monkeypatch, tmp_path):
    bench = _bench(monkeypatch)
    root = write_synthetic_tiny_imagenet(tmp_path, n_classes=3, n_train_per_class=8, n_val_per_class=2)
    assert bench.main(["--quick", "--peak-seconds", "0.1",
                       "--data", str(root), "--batch", "8", "--workers", "0", "--seeds", "3"]) == 0
    out = capsys.readouterr().out
    assert "cache build" in out and "pipeline alone" in out and "waiting for data" in out
    rows = {line.split("|")[2].strip(): line for line in out.splitlines() if line.startswith("| ")}
    training = next(line for name, line in rows.items() if name.startswith("ResNet18 training"))
    assert training.split("|")[1].strip() == "tooling" and len(training.split("|")[3].split(" / ")) == 3
    recipe = next(line for name, line in rows.items() if name.startswith("val top-1 %"))
    assert "over 3 seeds (3 classes, 24 train / 6 val images" in recipe
    assert out.count("recipe reference seed") == out.count("recipe labkit seed") == 3
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(RESULT, last)
    assert match, last
    check_limit_keys(last)
    assert float(match.group(1)) > 0 and float(match.group(3)) > 0
    assert 0 <= float(match.group(4)) <= 100 and 0 <= float(match.group(5)) <= 100


def test_recipe_sides_alternate_and_differ_only_in_the_recipe(monkeypatch, tmp_path):
    bench = _bench(monkeypatch)
    seen = []
    from labkit import runner

    real_run = runner.run

    def run(lab, cfg, **options):
        seen.append(cfg)
        assert options["epoch_splits"] == () and not options["write_files"]  # val is not read while training
        return real_run(lab, cfg, **options)

    monkeypatch.setattr(runner, "run", run)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 64, 64), dtype=torch.uint8, generator=g)
    labels = torch.arange(24) % 4
    train_set = bench.first_classes(images, labels, 3)
    assert int(train_set[1].max()) == 2 and len(train_set[1]) == 18
    runs = bench.recipe_runs([0, 1], train=train_set, val=train_set, classes=3, epochs=1, width=4, batch_size=6)
    assert [cfg.seed for cfg in seen] == [0, 0, 1, 1]
    reference, labkit = seen[0], seen[1]  # seed 0: reference first; seed 1: labkit first
    assert seen[2].weight_decay == 5e-4 and seen[3].weight_decay == 1e-4
    differ = {k for k in reference.to_dict() if reference.to_dict()[k] != labkit.to_dict()[k]}
    assert differ == {"weight_decay", "schedule", "step_size"}
    assert (labkit.schedule, labkit.weight_decay) == ("cosine", 5e-4)
    assert (reference.schedule, reference.step_size, reference.weight_decay) == ("step", 30, 1e-4)
    assert all(len(runs[side]) == 2 and 0 <= runs[side][0]["top1"] <= 1 for side in runs)


def test_label_mapping_check_trains_the_lab_through_the_runner(monkeypatch, tmp_path):
    bench = _bench(monkeypatch)
    monkeypatch.setitem(bench.CHECK, "width", 4)
    monkeypatch.setitem(bench.CHECK, "epochs", 2)
    monkeypatch.setitem(bench.CHECK, "batch_size", 8)
    root = write_synthetic_tiny_imagenet(tmp_path, n_classes=3, n_train_per_class=8, n_val_per_class=2)
    result = bench.label_mapping_check(root, tmp_path / "cache", seconds=120)
    assert result["epochs"] == 2 and 0.0 <= result["val_top5"] <= 1.0 and result["prepare_seconds"] > 0
    assert list((tmp_path / "cache" / "cache").glob("tiny-imagenet-train-*.pt")), "the cache was not built fresh"
