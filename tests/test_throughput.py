"""bench/throughput.py: the measuring pieces every bench shares."""

from __future__ import annotations

import math

import pytest
import torch
from throughput import (
    FitTimer,
    LoaderTimer,
    TrainingTimer,
    alternate,
    endless,
    loader_speed,
    markdown_table,
    matmul_flops,
    peak_fraction,
    spread,
    training_flops,
)
from torch import nn


class EpochLoader:
    """Two batches per epoch of 4 images; records the epochs it was told about."""

    def __init__(self, shape=(1, 4, 4)) -> None:
        self.epochs: list[int] = []
        self.shape = shape

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __iter__(self):
        for _ in range(2):
            yield torch.randn(4, *self.shape), torch.randint(0, 3, (4,))


def test_endless_crosses_epochs_and_sets_each_epoch():
    loader = EpochLoader()
    stream = endless(loader)
    for _ in range(5):
        next(stream)
    assert loader.epochs == [0, 1, 2]


def test_loader_speed_counts_images_and_checks_the_batch_shape():
    assert loader_speed(EpochLoader(), batches=3, expect=(1, 4, 4)).images_per_s > 0
    with pytest.raises(ValueError, match=r"expected float batches of shape \(N, 3, 32, 32\)"):
        loader_speed(EpochLoader(), batches=1, expect=(3, 32, 32))


def _timer(loader, lr=0.5):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    return TrainingTimer(model, torch.optim.SGD(model.parameters(), lr=lr), loader, warmup_steps=0)


def test_training_timer_trains_and_splits_time_into_steps_and_waiting():
    timer = _timer(EpochLoader())
    before = [p.detach().clone() for p in timer.model.parameters()]
    with pytest.raises(RuntimeError, match="run"):
        _ = timer.speed
    timer.run(3)
    assert timer.images == 12
    assert any(not torch.equal(a, b) for a, b in zip(before, timer.model.parameters()))
    speed = timer.speed
    assert speed.images_per_s > 0 and 0 <= speed.wait_share <= 1


def test_training_timer_learns_a_fixed_batch():
    images, labels = torch.randn(8, 1, 4, 4), torch.arange(8) % 3
    timer = _timer([(images, labels)])
    loss = nn.CrossEntropyLoss()
    first = loss(timer.model(images), labels).item()
    timer.run(30)
    assert loss(timer.model(images), labels).item() < 0.5 * first


def test_alternate_runs_every_timer_in_rounds_and_keeps_order():
    timers = [_timer(EpochLoader()), _timer(EpochLoader())]
    speeds = alternate(timers, steps=8, rounds=4)
    assert [t.images for t in timers] == [32, 32]
    assert len(speeds) == 2 and all(s.images_per_s > 0 for s in speeds)


def test_alternate_reverses_the_order_every_other_round_and_records_each_chunk():
    calls = []

    class Recorder(LoaderTimer):
        def __init__(self, name):
            super().__init__(EpochLoader())
            self.name = name

        def run(self, batches):
            calls.append((self.name, batches))
            super().run(batches)

    a, b = Recorder("a"), Recorder("b")
    alternate([a, b], steps=9, rounds=3)
    assert calls == [("a", 3), ("b", 3), ("b", 3), ("a", 3), ("a", 3), ("b", 3)]
    assert a.images == b.images == 36 and len(a.rounds) == len(b.rounds) == 3
    low, mid, high = spread(s.images_per_s for s in a.rounds)
    assert 0 < low <= mid <= high


def test_loader_timer_leaves_the_first_batch_untimed_and_checks_its_shape():
    timer = LoaderTimer(EpochLoader(), expect=(1, 4, 4))
    assert timer.images == 0  # the first batch was drawn, not counted
    timer.run(3)
    assert timer.images == 12 and len(timer.rounds) == 1 and timer.speed.images_per_s > 0
    with pytest.raises(ValueError, match="expected float batches"):
        LoaderTimer(EpochLoader(), expect=(3, 32, 32))


def test_fit_timer_trains_through_fit_exactly_as_the_plain_loop_does():
    batches = [(torch.randn(4, 1, 4, 4), torch.randint(0, 3, (4,))) for _ in range(5)]
    timers = []
    for kind in (TrainingTimer, FitTimer):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        timers.append(kind(model, torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9), batches,
                           warmup_steps=1))
    alternate(timers, steps=6, rounds=3)
    plain, fitted = timers
    assert plain.images == fitted.images == 24
    for a, b in zip(plain.model.parameters(), fitted.model.parameters()):
        torch.testing.assert_close(a, b)
    assert len(fitted.rounds) == 3 and all(0 <= r.wait_share <= 1 for r in fitted.rounds)


def test_spread_needs_values():
    assert spread([3.0, 1.0, 2.0]) == (1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match="no values"):
        spread([])


def test_markdown_table_aligns_figures_right_and_rejects_ragged_rows():
    text = markdown_table(("measure", "reference", "labkit"), [("speed", "1", "2")])
    assert text.splitlines() == ["| measure | reference | labkit |", "| --- | ---: | ---: |", "| speed | 1 | 2 |"]
    with pytest.raises(ValueError, match="2 cells"):
        markdown_table(("a", "b", "c"), [("x", "y")])


def test_spread_text_is_min_median_max_formatted():
    from throughput import spread_text

    assert spread_text([3.0, 1.0, 2.0, 10.0]) == "1.0 / 2.5 / 10.0"
    assert spread_text([1234.5, 99.0, 5000.0], "{:,.0f}", " s") == "99 / 1,234 / 5,000 s"


def test_training_flops_counts_a_linear_layer_exactly():
    x, y = torch.randn(8, 64), torch.randint(0, 32, (8,))
    layer = nn.Linear(64, 32)
    forward = 2 * 8 * 64 * 32
    assert training_flops(layer, x, y, backward=False) == forward
    assert training_flops(layer, x, y) == 2 * forward  # + the weight gradient (the input needs none)
    assert training_flops(layer, x.requires_grad_(), y) == 3 * forward  # + the input gradient
    assert layer.weight.grad is None  # a copy was run


def test_matmul_flops_are_positive_and_finite_and_give_the_peak_fraction():
    peaks = matmul_flops("cpu", seconds=0.05, size=256)
    assert peaks["fp32"] is not None and 0 < peaks["fp32"] < float("inf")
    for name in ("bf16", "fp16"):
        assert peaks[name] is None or 0 < peaks[name] < float("inf")
    assert peak_fraction(10.0, peaks["fp32"] / 100, peaks, None) == pytest.approx(0.1)
    assert math.isnan(peak_fraction(10.0, 1.0, {"fp32": 1.0, "bf16": None}, torch.bfloat16))  # not measured
