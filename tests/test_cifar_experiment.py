"""Lab 02's recipes, schedules, training at smoke size, analysis helpers, CLI and exercise check."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit.check import CheckFailed
from labkit.check.cifar10 import check_test_loop, reference_test
from labkit.data.cifar import CIFAR10Split
from labkit.experiments import cifar10 as lab


def epoch_lrs(recipe: str, epochs: int = 10, steps: int = 391) -> list[float]:
    model = nn.Linear(2, 2)
    opt = lab.make_optimizer(model, lab.RECIPES[recipe])
    sched, interval = lab.make_scheduler(opt, lab.RECIPES[recipe], epochs, steps)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        for _ in range(steps if interval == "step" else 1):
            opt.step()
            sched.step()
    return lrs


def test_course_recipe_is_the_course_script():
    r = lab.RECIPES["course"]
    assert (r.lr, r.momentum, r.weight_decay, r.batch_size, r.epochs) == (0.1, 0.9, 5e-4, 128, 10)
    assert not r.nesterov and r.label_smoothing == 0


def test_course_lr_switches_from_0_1_to_0_01_at_epoch_5():
    lrs = epoch_lrs("course")
    assert lrs[:5] == [0.1] * 5
    assert lrs[5:] == pytest.approx([0.01] * 5)
    assert lab.drop_epoch(10) == 5


def test_fast_recipe_warms_up_then_anneals_per_step():
    model = nn.Linear(2, 2)
    recipe = lab.RECIPES["fast"]
    assert recipe.nesterov and recipe.label_smoothing > 0 and recipe.epochs == 10
    opt = lab.make_optimizer(model, recipe)
    sched, interval = lab.make_scheduler(opt, recipe, 10, 100)
    assert interval == "step" and opt.param_groups[0]["nesterov"]
    lrs = []
    for _ in range(1000):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = max(range(1000), key=lrs.__getitem__)
    assert 150 <= peak <= 250 and lrs[peak] == pytest.approx(0.2)
    assert lrs[0] == pytest.approx(0.02)
    assert lrs[-1] < 0.002 and all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))


def test_unknown_recipe_is_a_clear_error():
    with pytest.raises(ValueError, match="course, fast"):
        lab.get_recipe("slow")


def test_smoke_training_learns_and_drops_the_lr_halfway():
    train, test = lab.load_data()
    run = lab.train_cifar10(train, test, "course", device="cpu")
    h = run.history
    assert h.epoch == [1, 2, 3, 4] and h.lr == pytest.approx([0.1, 0.1, 0.01, 0.01])
    assert run.lr_drop == 2.5
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert h.last("test_accuracy") > 0.3  # chance is 0.1
    assert "test_accuracy" in h and "train_accuracy" in h


def test_load_data_at_smoke_size_never_touches_a_real_folder(tmp_path):
    lab.load_data(tmp_path)
    assert (tmp_path / "synthetic" / "cifar-10-batches-py" / "data_batch_1").is_file()
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_full_size_without_data_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LABKIT_SMOKE", "0")
    with pytest.raises(Exception, match="missing data_batch_1, .*, test_batch, batches.meta"):
        lab.load_data(tmp_path, smoke=False, download=False)
    from labkit.cli import main

    assert main(["run", "cifar10", "--data", str(tmp_path)]) == 1  # a message, not a traceback
    assert "--download" in capsys.readouterr().err


def test_per_class_accuracy_and_misclassified():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 0, 2])
    acc = lab.per_class_accuracy(preds, labels, num_classes=4)
    assert acc[:3].tolist() == [0.5, 1.0, 0.5] and torch.isnan(acc[3])
    split = CIFAR10Split(torch.zeros(6, 3, 32, 32, dtype=torch.uint8), labels, tuple("abcdefghij"))
    images, titles = lab.misclassified(preds, split, count=5)
    assert images.shape[0] == 2 and titles == ["a → b", "c → a"]


def test_cli_runs_at_smoke_size(tmp_path):
    from labkit.cli import main

    out = tmp_path / "out"
    assert main(["run", "cifar10", "--smoke", "--epochs", "2", "--recipe", "fast", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"] == "fast" and metrics["epochs"] == 2 and len(metrics["history"]["epoch"]) == 2
    assert (out / "curves.png").is_file() and (out / "checkpoints" / "last.pt").is_file()


# --- the exercise check ---------------------------------------------------------------------------------

def solution(model, loader, device):
    model.eval()
    total, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            out = model(x.to(device))
            total += F.cross_entropy(out, y.to(device), reduction="sum").item()
            correct += (out.argmax(1) == y.to(device)).sum().item()
            count += len(y)
    return total / count, correct / count


def no_eval(model, loader, device):
    with torch.no_grad():
        return _loop(model, loader)


def no_grad_missing(model, loader, device):
    model.eval()
    return _loop(model, loader)


def per_batch_mean(model, loader, device):
    model.eval()
    losses, correct, count = [], 0, 0
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            losses.append(F.cross_entropy(out, y).item())
            correct += (out.argmax(1) == y).sum().item()
            count += len(y)
    return sum(losses) / len(losses), correct / count


def percent(model, loader, device):
    loss, acc = solution(model, loader, device)
    return loss, 100 * acc


def _loop(model, loader):
    total, correct, count = 0.0, 0, 0
    for x, y in loader:
        out = model(x)
        total += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        count += len(y)
    return total / count, correct / count


def test_check_accepts_the_solution(capsys):
    check_test_loop(solution)
    assert "✔" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (no_eval, "model.eval()"), (no_grad_missing, "torch.no_grad()"),
    (per_batch_mean, "smaller"), (percent, "percentage"),
    (lambda m, l, d: 0.5, "two numbers"),
])
def test_check_explains_common_mistakes(wrong, hint):
    with pytest.raises(CheckFailed, match=None) as err:
        check_test_loop(wrong)
    assert hint in str(err.value)


def test_check_compares_on_the_labs_model():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 10))
    loader = [(torch.randn(5, 3, 2, 2), torch.randint(0, 10, (5,))) for _ in range(3)]
    check_test_loop(solution, model, loader)
    assert reference_test(model, loader, "cpu") == pytest.approx(solution(model, loader, "cpu"))
