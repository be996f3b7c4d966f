"""Lab 03 training on tiny synthetic MNIST: learning, schedules, early stopping + best checkpoint, the mistakes, CLI."""

from __future__ import annotations

import math

import pytest
import torch

from labkit.callbacks import EarlyStopping
from labkit.cli import main as cli_main
from labkit.experiments import mnist as lab


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from labkit.data.mnist import load_mnist, write_synthetic_mnist

    return load_mnist(write_synthetic_mnist(tmp_path_factory.mktemp("syn"), n_train=600, n_test=200))


@pytest.fixture(scope="module")
def trained(data):
    return lab.train(lab.default_recipe(smoke=True), data, progress=False)


def test_default_recipe_learns_synthetic_digits(trained):
    h = trained.history
    assert h.epoch == [1, 2, 3]
    assert h.last("train_loss") < 0.6 * h["train_loss"][0]
    assert h.last("val_accuracy") > 0.8 and h.last("test_accuracy") > 0.8


def test_recipe_rejects_unknown_choices():
    with pytest.raises(ValueError, match="optimizer must be one of adam, adamw, nadam, sgd"):
        lab.Recipe(optimizer="rmsprop")
    with pytest.raises(ValueError, match="schedule must be one of"):
        lab.Recipe(schedule="cosine")
    with pytest.raises(TypeError):
        lab.Recipe().with_(colour="red")


def _lrs(recipe, steps_per_epoch=5):
    model = torch.nn.Linear(2, 2)
    opt = lab.make_optimizer(recipe, model.parameters())
    sched, interval = lab.make_scheduler(recipe, opt, steps_per_epoch)
    lrs = []
    for epoch in range(recipe.epochs):
        for _ in range(steps_per_epoch):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if sched is not None and interval == "step":
                sched.step()
        if sched is not None and interval == "epoch":
            sched.step()
    return lrs, interval


def test_schedules_shape_the_learning_rate():
    base = lab.Recipe(epochs=6, lr=1e-3, optimizer="adam")
    constant, _ = _lrs(base.with_(schedule="constant"))
    assert set(constant) == {1e-3}
    step, interval = _lrs(base.with_(schedule="step"))
    assert interval == "epoch"
    assert [step[i * 5] for i in range(6)] == pytest.approx([1e-3, 1e-3, 9e-4, 9e-4, 8.1e-4, 8.1e-4])
    warm, interval = _lrs(base.with_(schedule="warmup"))
    assert interval == "step" and warm[0] == pytest.approx(2e-4) and warm[4:] == pytest.approx([1e-3] * 26)
    cycle, _ = _lrs(base.with_(schedule="onecycle"))
    peak = max(range(len(cycle)), key=cycle.__getitem__)
    assert cycle[0] < 1e-4 and cycle[peak] == pytest.approx(1e-3, rel=0.05) and cycle[-1] < 1e-5
    assert 5 <= peak <= 10  # a quarter of 30 steps


def test_comparison_runs_share_epochs_and_seed(data):
    runs = {name: lab.COMPARISONS[name] for name in ("Adam, constant", "SGD momentum")}
    histories = lab.compare(data, lab.default_recipe(smoke=True).with_(epochs=2), runs, progress=False)
    assert list(histories) == list(runs) and all(len(h) == 2 for h in histories.values())
    table = lab.comparison_table(histories)
    assert "| Adam, constant |" in table and "| SGD momentum |" in table
    assert set(lab.COMPARISONS) == {"Adam, constant", "Adam + StepLR", "Adam + warm-up", "NAdam + StepLR",
                                    "SGD momentum"}


def test_early_stopping_keeps_and_reloads_the_best_epoch(data, tmp_path):
    recipe = lab.default_recipe(smoke=True).with_(**lab.COMPARISONS["Adam, constant"], epochs=12)
    run = lab.train(recipe, data, early_stopping=EarlyStopping("val_accuracy", patience=2),
                    checkpoint_dir=tmp_path / "ckpt", progress=False)
    h = run.history
    best_epoch, best_val = h.best("val_accuracy")
    assert len(h) < 12 and "early stopping" in h.stop_reason
    assert len(h) == best_epoch + 2  # stopped `patience` epochs after the best one
    best = lab.reload_best(run)
    assert lab.test_accuracy(best, data, split="val") == pytest.approx(best_val, abs=1e-9)
    assert lab.test_accuracy(best, data) == pytest.approx(h["test_accuracy"][best_epoch - 1], abs=1e-9)


def test_sampling_a_label_scores_below_argmax_and_varies(trained, data):
    logits, labels = lab.predict_logits(trained.model, data)
    assert logits.shape == (200, 10)
    right = lab.argmax_accuracy(logits, labels)
    assert right == pytest.approx(trained.history.last("test_accuracy"), abs=1e-6)
    sampled = [lab.sampled_accuracy(logits, labels, seed=s) for s in range(4)]
    assert max(sampled) < right and len(set(sampled)) > 1
    assert lab.sampled_accuracy(logits, labels, seed=7) == lab.sampled_accuracy(logits, labels, seed=7)


def test_softmax_before_cross_entropy_is_stuck_above_its_floor(data):
    runs = lab.softmax_mistake(data, lab.default_recipe(smoke=True).with_(epochs=2), progress=False)
    right, wrong = runs.values()
    floor = math.log(1 + 9 / math.e)
    assert min(wrong["train_loss"]) > floor > right.last("train_loss")
    assert "mistake" in lab.mistakes_table(runs)


def test_confusion_matrix_and_misclassified():
    labels = torch.tensor([0, 1, 2, 2, 1])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 2, 2, 1, 1]), 10).float() * 5
    logits[3, 1] = 9  # the most confident mistake
    matrix = lab.confusion_matrix(logits.argmax(1), labels)
    assert matrix.shape == (10, 10) and matrix.sum() == 5 and matrix.diag().sum() == 3
    assert matrix[1, 2] == 1 and matrix[2, 1] == 1
    assert lab.misclassified(logits, labels).tolist() == [3, 1]


def test_figures_render(data, trained, tmp_path):
    logits, labels = lab.predict_logits(trained.model, data)
    lab.sample_grid(data, per_class=2, path=tmp_path / "grid.png")
    lab.plot_class_counts(data, path=tmp_path / "counts.png")
    lab.plot_confusion_matrix(lab.confusion_matrix(logits.argmax(1), labels), path=tmp_path / "cm.png")
    lab.plot_misclassified(data, logits, labels, limit=10, path=tmp_path / "wrong.png")
    assert all((tmp_path / f"{n}.png").stat().st_size > 1000 for n in ("grid", "counts", "cm", "wrong"))


def test_cli_run_smoke_writes_checkpoint_and_metrics(tmp_path, capsys):
    assert cli_main(["run", "mnist", "--smoke", "--epochs", "2", "--optimizer", "adam", "--schedule", "step",
                     "--lr", "0.003", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "best val accuracy" in out and (tmp_path / "checkpoints" / "best.pt").is_file()
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "curves.png").is_file()


def test_cli_without_data_exits_with_the_fix(tmp_path):
    with pytest.raises(SystemExit) as err:
        cli_main(["run", "mnist", "--data", str(tmp_path / "nowhere")])
    assert "data_prep/mnist.py" in str(err.value.code)


def test_smoke_entry_point(tmp_path):
    metrics = lab.smoke(tmp_path)
    assert metrics["test_accuracy"] > 0.8 and (tmp_path / "curves.png").is_file()
