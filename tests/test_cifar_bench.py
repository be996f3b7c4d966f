"""bench/cifar_bench.py: its airbench-style reference augments correctly, its recipe and full-size figures
read the right numbers, and a quick run ends with its RESULT line (tiny sizes, generated images)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import torch

from labkit.history import History
from labkit.labs.cifar10 import data as cifar
from tests.bench_result import check_limit_keys

BENCH = Path(__file__).resolve().parent.parent / "bench" / "cifar_bench.py"


@pytest.fixture
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("cifar_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The image moved by (dy, dx), written pixel by pixel: out[i, j] = image[i + dy, j + dx], else 0."""
    _, h, w = image.shape
    out = torch.zeros_like(image)
    for i in range(h):
        for j in range(w):
            if 0 <= i + dy < h and 0 <= j + dx < w:
                out[:, i, j] = image[:, i + dy, j + dx]
    return out


def test_batch_translate_moves_each_image_by_its_own_shift(bench):
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    padded = torch.nn.functional.pad(images, (2,) * 4)
    shifts = torch.tensor([[1, -2], [0, 0], [-2, 2], [2, 1]])
    out = bench.batch_translate(padded, shifts, 8)
    assert out.shape == images.shape and out.dtype == torch.uint8
    for n, (dy, dx) in enumerate(shifts.tolist()):
        assert torch.equal(out[n], shifted(images[n], dy, dx)), (dy, dx)
    assert torch.equal(out[1], images[1])  # no shift: the image itself
    with pytest.raises(ValueError, match="within ±2"):
        bench.batch_translate(padded, torch.tensor([[3, 0]] * 4), 8)


def test_batch_flip_mirrors_only_the_chosen_images(bench):
    images = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).view(2, 3, 2, 4)
    out = bench.batch_flip(images, torch.tensor([True, False]))
    assert torch.equal(out[0], images[0].flip(-1)) and torch.equal(out[1], images[1])
    assert out[0, 0, 0].tolist() == [3.0, 2.0, 1.0, 0.0]


def normalised(images: torch.Tensor) -> torch.Tensor:
    return cifar.eval_transform()(images)


def test_airbench_style_loader_without_augmentation_serves_every_image_once_normalised(bench):
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(50)  # label = row: tells which image each output is
    loader = bench.AirbenchStyleLoader(images, labels, batch_size=16, device=torch.device("cpu"), shift=0, flip=0.0)
    batches = list(loader)
    assert len(batches) == len(loader) == 4 and [len(b[1]) for b in batches] == [16, 16, 16, 2]
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(50)) and seen.tolist() != list(range(50))  # all, shuffled
    for x, y in batches:
        assert x.dtype == torch.float32
        torch.testing.assert_close(x, normalised(images[y]), rtol=0, atol=1e-5)


def test_airbench_style_loader_output_is_a_shift_and_flip_of_its_image_new_each_epoch(bench):
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(12)
    loader = bench.AirbenchStyleLoader(images, labels, batch_size=12, device=torch.device("cpu"), seed=3)
    epochs = [next(iter(loader)) for _ in range(2)]
    for x, y in epochs:
        assert x.shape == (12, 3, 32, 32)
        for out, index in zip(x, y.tolist()):
            # all 2 x 81 flips and shifts of the image, cut from its zero-padded copy
            padded = torch.nn.functional.pad(torch.stack([images[index], images[index].flip(-1)]), (4,) * 4)
            candidates = normalised(torch.cat([padded[:, :, 4 + dy:36 + dy, 4 + dx:36 + dx]
                                               for dy in range(-4, 5) for dx in range(-4, 5)]))
            assert (candidates - out).abs().amax(dim=(1, 2, 3)).min() < 1e-5
    first, second = (x[y.argsort()] for x, y in epochs)
    assert not torch.equal(first, second)  # a new augmentation draw every epoch


def history(accuracies: list[float], seconds: list[float]) -> History:
    h = History()
    for epoch, (acc, sec) in enumerate(zip(accuracies, seconds), start=1):
        h.append(epoch, 0.1, sec, {"test_accuracy": acc})
    return h


def test_time_to_target_counts_every_epoch_up_to_the_first_that_reaches_it(bench):
    h = history([0.2, 0.36, 0.34, 0.5], [10.0, 11.0, 12.0, 13.0])
    assert bench.time_to(h, 0.35) == (2, 21.0)
    assert bench.time_to(h, 0.5) == (4, 46.0)
    assert bench.time_to(h, 0.6) is None


def run(seed: int, accuracy: float, reached):
    return {"seed": seed, "accuracy": accuracy, "epochs": 5, "seconds": 100.0, "reached": reached}


def test_recipe_ratio_is_a_time_ratio_when_every_run_reaches_the_target_else_an_accuracy_ratio(bench):
    results = {"course": [run(0, 0.40, (4, 80.0)), run(1, 0.41, (4, 90.0)), run(2, 0.42, (5, 100.0))],
               "fast": [run(0, 0.44, (2, 40.0)), run(1, 0.45, (3, 45.0)), run(2, 0.46, (3, 60.0))]}
    table, ratio, measure = bench.recipe_table(results, 0.35)
    assert measure == "time" and ratio == pytest.approx(90.0 / 45.0)
    assert "3/3" in table and "40 / 45 / 60 s" in table
    results["course"][0]["reached"] = None
    table, ratio, measure = bench.recipe_table(results, 0.35)
    assert measure == "accuracy" and ratio == pytest.approx(0.45 / 0.41) and "2/3" in table


def test_full_size_rows_read_the_committed_runs_or_say_not_yet_recorded(bench, tmp_path):
    rows = bench.full_reference_rows(tmp_path)
    assert [r[1] for r in rows] == ["not yet recorded"] * 2
    (tmp_path / "fast").mkdir()
    (tmp_path / "fast" / "metrics.json").write_text(json.dumps({"history": {
        "epoch": [1, 2, 3], "seconds": [100.0, 110.0, 120.0],
        "metrics": {"test_accuracy": [0.6, 0.86, 0.89]}}}))
    course, fast = bench.full_reference_rows(tmp_path)
    assert course[1] == "not yet recorded"
    assert fast[1:] == ["0.8900", "210 s (epoch 2)", "not reached in 3 epochs"]


def test_course_dataset_is_limited_to_the_split_and_agrees_with_labkits_labels(bench, tmp_path):
    folder = cifar.write_synthetic_cifar10_folder(tmp_path / "cifar", n_per_class=6)
    train, _ = cifar.load_cifar10_train_eval(folder, holdout=20, seed=0, verbose=False)
    dataset = bench.course_dataset(folder, train)
    assert len(dataset) == len(train) == 40
    labels = [dataset.dataset.samples[i][1] for i in dataset.indices]
    assert labels == train.labels.tolist()
    image, _ = dataset[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32


def test_bench_quick_run_prints_both_figures_and_the_result(bench, capsys):
    args = ["--quick", "--peak-seconds", "0.1",
            "--batch", "16", "--workers", "0", "--steps", "1", "--rounds", "3", "--seeds", "2"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "generated images" in out and "pipeline alone" in out and "waiting for data" in out
    assert "airbench-style" in out and "## recipe" in out and "## full-size reference runs" in out
    assert out.count("recipe course, seed") == 2 and out.count("recipe fast, seed") == 2
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(r"RESULT tooling_ratio=([\d.]+) recipe_ratio=([\d.]+) recipe_measure=(time|accuracy) "
                         r"tooling_ratio_course=([\d.]+) tooling_ratio_airbench=([\d.]+) "
                         r"pipeline_ratio_course=([\d.]+) pipeline_ratio_airbench=([\d.]+) "
                         r"peak_fraction=\S+ precision=\S+ matmul_fp32_gflops=\S+ matmul_bf16_gflops=\S+"
                         r"( cuda_tooling_ratio=[\d.]+ cuda_amp_vs_ref_fp32=[\d.]+ cuda_peak_fraction=\S+ .*)?", last)
    check_limit_keys(last)
    assert match and all(float(match.group(i)) > 0 for i in (1, 2, 4, 5, 6, 7))
    # tooling_ratio is against the stronger peer: the smaller of the two per-peer ratios
    assert float(match.group(1)) == pytest.approx(min(float(match.group(4)), float(match.group(5))), abs=0.011)
