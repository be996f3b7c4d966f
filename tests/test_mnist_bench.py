"""bench/mnist_bench.py on tiny synthetic MNIST: both figures and their RESULT keys, alternated tooling rounds of
equal size, the peer recipe learning, and the time-to-target bookkeeping (lower bounds, accuracy at the target)."""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

from labkit.data.tensor_loader import single_thread_on_cpu
from labkit.labs import mnist as lab
from labkit.labs.mnist.data import load_mnist, write_synthetic_mnist
from tests.bench_result import check_limit_keys

BENCH = Path(__file__).resolve().parent.parent / "bench" / "mnist_bench.py"
KEYS = ("tooling_ratio", "recipe_ratio", "recipe_bound", "peer_ratio", "peer_bound", "acc", "epochs", "reached",
        "ref_reached", "peer_reached", "peak_fraction", "precision", "matmul_fp32_gflops", "matmul_bf16_gflops")


@pytest.fixture
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("mnist_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def root(tmp_path):
    return write_synthetic_mnist(tmp_path, n_train=300, n_test=100)


def test_quick_run_prints_both_figures_and_the_result_keys(bench, root, capsys):
    with single_thread_on_cpu(torch.device("cpu")):  # tiny sizes: robust to a busy CI machine
        assert bench.main(["--quick", "--peak-seconds", "0.1", "--data", str(root), "--tool-steps", "3",
                           "--tool-rounds", "3"]) == 0
    out = capsys.readouterr().out
    assert "tooling_ratio (labkit / reference, medians)" in out
    for side in ("reference: its loop", "labkit: `fit` + TensorLoader", "reference: pytorch/examples defaults",
                 "labkit: Lab 03 default", "peer: tuomaso/train_mnist_fast"):
        assert side in out
    assert "of 3 rounds" in out and re.search(r"\| [0-3]/3 \|", out)
    last = out.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    values = dict(item.split("=", 1) for item in last.split()[1:])
    assert tuple(values) == KEYS
    check_limit_keys(last)
    assert float(values["tooling_ratio"]) > 0 and float(values["peer_ratio"]) > 0
    assert values["recipe_bound"] in ("exact", "lower", "upper", "none")
    assert re.fullmatch(r"\d/3", values["reached"]) and re.fullmatch(r"\d/3", values["ref_reached"])


def test_tooling_alternates_the_sides_in_rounds_of_equal_size(bench, root, monkeypatch):
    calls = []
    for cls in (bench.ReferenceLoop, bench.LabkitFit):
        original = cls.train

        def logged(self, steps, original=original):
            calls.append((self.name, steps))
            return original(self, steps)

        monkeypatch.setattr(cls, "train", logged)
    source = load_mnist(root, seed=0)
    with single_thread_on_cpu(torch.device("cpu")):
        out = bench.tooling(root, source, torch.device("cpu"), steps=6, rounds=3, workers=0, n_train=None, seed=1)
    timed = calls[2:]  # after one warm-up call each
    # alternate() reverses the order every other round, so neither side always runs first
    assert timed == [("reference", 2), ("labkit", 2), ("labkit", 2), ("reference", 2), ("reference", 2), ("labkit", 2)]
    assert len(out["reference"]["rounds"]) == len(out["labkit"]["rounds"]) == 3
    # equal samples: the same batches of 64 over the same 300 images (an epoch ends in a batch of 44)
    assert out["reference"]["images"] == out["labkit"]["images"] == 4 * 64 + 44 + 64
    for side in (out["reference"], out["labkit"]):
        assert 0 <= side["test_accuracy"] <= 1
    assert out["flops"] > 0  # training FLOPs per image, for peak_fraction


def test_the_peer_recipe_learns_and_stops_at_the_target(bench, root):
    source = load_mnist(root, seed=0)
    test = lab.loader(source, "test", 100, "cpu")
    args = argparse.Namespace(target=0.9, evals_per_epoch=2, ref_max_epochs=1, peer_epochs=40, max_epochs=None)
    with single_thread_on_cpu(torch.device("cpu")):
        attempt = bench.run_fit_recipe("peer", source, test, args, seed=0, device=torch.device("cpu"),
                                       channels_last=False)
    accuracies = [p[2] for p in attempt.points]
    assert attempt.hit is not None, accuracies  # seven-segment digits are easy: well above chance (10 %)
    assert attempt.points[-1] == attempt.hit  # it stopped at the first evaluation at the target
    assert attempt.hit[1] < 40 and attempt.seconds > 0
    seconds = [p[0] for p in attempt.points]
    assert seconds == sorted(seconds)  # the training clock only moves forward


def test_time_to_target_bookkeeping(bench):
    def attempt(*points, target=0.99):
        return bench.Attempt("x", 0, target, list(points))

    reached = attempt((10.0, 0.5, 0.98), (20.0, 1.0, 0.991), (30.0, 1.5, 0.995))
    assert reached.hit == (20.0, 1.0, 0.991) and reached.seconds == 20.0 and reached.epochs == 1.0
    missed = attempt((50.0, 1.0, 0.985))
    assert missed.hit is None and missed.seconds == 50.0  # its whole training time: a lower bound
    assert bench.acc_at_target([reached, missed]) == 0.991  # the accuracy at the target time, not the final one

    fast = [attempt((t, 1.0, 0.992)) for t in (4.0, 5.0, 6.0)]
    assert bench.median_time(fast) == (5.0, True)
    assert bench.ratio([attempt((t, 1.0, 0.992)) for t in (10.0, 20.0, 30.0)], fast) == (4.0, "exact")
    # two reference runs missed the target (after 7 and 9 s): the true median is at least 8 s, a lower bound
    slow = [attempt((8.0, 1.0, 0.992)), attempt((9.0, 1.0, 0.98)), attempt((7.0, 1.0, 0.98))]
    assert bench.median_time(slow) == (8.0, False)
    value, bound = bench.ratio(slow, fast)
    assert bound == "lower" and value == pytest.approx(8.0 / 5.0)
    assert bench.ratio(fast, slow)[1] == "upper"
    assert bench.ratio(slow, slow)[1] == "none"
    assert bench.time_cell(slow) == ">7.0 / 8.0 / >9.0 s"
    # a run that missed after training longer than the median does not make it inexact
    assert bench.median_time([*fast[:2], attempt((60.0, 2.0, 0.98))]) == (5.0, True)


def test_the_clock_tests_at_the_same_points_of_every_epoch(bench, root):
    source = load_mnist(root, seed=0)
    attempt = bench.Attempt("peer", 0, 1.01)  # never reached: every evaluation is recorded
    clock = bench.TimeToTarget(attempt, lab.loader(source, "test", 100, "cpu"), steps_per_epoch=5, evals_per_epoch=2,
                               max_steps=None, device=torch.device("cpu"), channels_last=False)
    state = argparse.Namespace(model=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), step=0,
                               stop=False, stop_reason="")
    clock.on_fit_start(state)
    for _epoch in range(2):
        for step in range(1, 6):  # an odd number of steps per epoch
            state.step = step
            clock.on_step_end(state)
    assert [p[1] for p in attempt.points] == [0.6, 1.0, 1.6, 2.0]
    assert not state.stop
