"""Lab 02: the course report's bug in numbers — the optimizer re-created every epoch (lr 0.01 from the
second epoch, and no momentum at all: the report's line is `optim.SGD(model.parameters(), lr=lr, weight_decay=5e-4)`)
against the course recipe with one optimizer."""

from __future__ import annotations

import copy
import json

import matplotlib
import pytest
import torch
from torch import nn

from labkit import runner
from labkit.callbacks import Progress
from labkit.engine import fit
from labkit.errors import UsageError
from labkit.labs import cifar10 as lab

matplotlib.use("Agg")


def _problem():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 4))
    batches = [(torch.randn(n, 5, generator=gen), torch.randint(0, 4, (n,), generator=gen)) for n in (6, 6, 4)]
    return model, batches


def _sgd(model, lr):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_the_probe_trains_as_a_loop_that_really_recreates_the_optimizer():
    model, batches = _problem()
    by_hand = copy.deepcopy(model)
    for epoch in (1, 2, 3):
        # the course report's loop: the first optimizer for epoch 1, then a new one each epoch, as the report wrote it
        optimizer = _sgd(by_hand, 0.1) if epoch == 1 else torch.optim.SGD(by_hand.parameters(), lr=0.01,
                                                                         weight_decay=5e-4)
        for x, y in batches:
            optimizer.zero_grad()
            nn.functional.cross_entropy(by_hand(x), y).backward()
            optimizer.step()
    probed = copy.deepcopy(model)
    probe = lab.OptimizerProbe(recreate_lr=0.01)
    fit(probed, batches, epochs=3, optimizer=_sgd(probed, 0.1), loss_fn=nn.CrossEntropyLoss(), device="cpu",
        callbacks=[probe, Progress(False)])
    assert torch.allclose(_weights(probed), _weights(by_hand), atol=1e-6)
    # and it differs from one optimizer kept for the three epochs
    kept = copy.deepcopy(model)
    fit(kept, batches, epochs=3, optimizer=_sgd(kept, 0.1), loss_fn=nn.CrossEntropyLoss(), device="cpu",
        callbacks=[Progress(False)])
    assert not torch.allclose(_weights(kept), _weights(by_hand), atol=1e-4)
    trace = probe.trace
    assert trace.epoch == [1, 2, 3] and trace.lr == pytest.approx([0.1, 0.01, 0.01])
    assert trace.momentum_start == [0.0, 0.0, 0.0] and trace.momentum_end[0] > 0
    assert trace.momentum_end[1:] == [0.0, 0.0]  # momentum 0: SGD keeps no buffer at all


def test_the_recreated_optimizer_has_the_reports_settings():
    model, batches = _problem()
    optimizer = _sgd(model, 0.1)
    probe = lab.OptimizerProbe(recreate_lr=0.01)
    fit(model, batches, epochs=2, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(), device="cpu",
        callbacks=[probe, Progress(False)])
    reports = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.01, weight_decay=5e-4).param_groups[0]
    group = optimizer.param_groups[0]
    for key in ("lr", "momentum", "dampening", "nesterov", "weight_decay"):
        assert group[key] == reports[key], key


def test_one_optimizer_carries_its_momentum_into_the_next_epoch():
    model, batches = _problem()
    probe = lab.OptimizerProbe()
    fit(model, batches, epochs=3, optimizer=_sgd(model, 0.1), loss_fn=nn.CrossEntropyLoss(), device="cpu",
        callbacks=[probe, Progress(False)])
    trace = probe.trace
    assert trace.momentum_start[0] == 0.0
    assert trace.momentum_start[1:] == pytest.approx(trace.momentum_end[:-1]) and min(trace.momentum_end) > 0


def test_momentum_norm_is_the_norm_of_every_buffer():
    model, batches = _problem()
    optimizer = _sgd(model, 0.1)
    assert lab.momentum_norm(optimizer) == 0.0
    x, y = batches[0]
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    buffers = torch.cat([optimizer.state[p]["momentum_buffer"].flatten() for p in model.parameters()])
    assert lab.momentum_norm(optimizer) == pytest.approx(float(buffers.norm()), rel=1e-6)


@pytest.fixture(scope="module")
def recreation(tmp_path_factory):
    out = tmp_path_factory.mktemp("cifar-recreation")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABKIT_DATA", str(out / "data"))
        cfg = lab.LAB.config("smoke", tensorboard=False)
        return lab.optimizer_recreation(cfg, runner.load_data(lab.LAB, cfg), progress=False)


def test_the_course_recipe_against_the_recreated_optimizer_at_smoke_size(recreation, tmp_path):
    correct, recreated = recreation.traces[lab.CORRECT], recreation.traces[lab.RECREATED]
    assert correct.lr == pytest.approx([0.1, 0.1, 0.01, 0.01])      # the drop at the milestone (epoch 2 of 4)
    assert recreated.lr == pytest.approx([0.1, 0.01, 0.01, 0.01])   # 0.01 from the second epoch on
    assert recreated.momentum_start == [0.0] * 4 and recreated.momentum_end[0] > 0
    assert recreated.momentum_end[1:] == [0.0] * 3  # re-created with momentum 0, as in the report
    assert correct.momentum_start[0] == 0.0 and min(correct.momentum_start[1:]) > 0
    runs = recreation.runs
    assert runs[lab.RECREATED].history.lr == pytest.approx(recreated.lr)  # the run's own record agrees
    record = json.loads(json.dumps(recreation.to_dict()))
    assert set(record) == {lab.CORRECT, lab.RECREATED} and len(record[lab.RECREATED]["test_accuracy"]) == 4
    fig = lab.plot_recreation(recreation, tmp_path / "recreation.png")
    assert (tmp_path / "recreation.png").stat().st_size > 0
    assert "smoke size, synthetic data" in fig._suptitle.get_text()
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch"] * 3
    numbers = lab.reference_numbers(runs[lab.CORRECT])
    assert numbers["test_accuracy"] == pytest.approx(runs[lab.CORRECT].final["test"]["accuracy"], abs=1e-4)
    # just before and just after the drop (the milestone is epoch 2 of 4); none without a milestone
    assert [k for k in numbers if k.startswith("test_accuracy_epoch")] == ["test_accuracy_epoch2",
                                                                         "test_accuracy_epoch3"]
    assert not [k for k in lab.reference_numbers(runs[lab.RECREATED]) if "epoch" in k[len("test_accuracy"):]]


def test_recreation_needs_the_course_recipe():
    with pytest.raises(UsageError, match="course recipe"):
        lab.optimizer_recreation(lab.LAB.config("smoke", "fast"))


def test_most_confused_lists_the_largest_mistakes_first():
    classes = ["cat", "dog", "ship"]
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    preds = torch.tensor([1, 1, 0, 0, 1, 2, 2, 0])  # cat→dog twice, dog→cat once, ship→cat once
    assert lab.most_confused(preds, labels, classes, count=2) == [["cat", "dog", 2], ["dog", "cat", 1]]
    assert lab.most_confused(labels, labels, classes) == []  # no mistakes: no rows


def test_size_note_says_what_the_figures_show():
    assert lab.size_note(lab.LAB.config("smoke")) == "smoke size, synthetic data"
    assert lab.size_note(lab.LAB.config("smoke", data="/some/folder")) == "smoke size"
    assert lab.size_note(lab.LAB.config("laptop")) == "laptop size"
    assert lab.size_note(lab.LAB.comparison(lab.LAB.config("laptop"))) == "laptop size, 5,000 real training images"
    assert lab.size_note(lab.LAB.config("full")) == "full size"
