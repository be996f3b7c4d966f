"""Lab 02's config (recipes, sizes, schedules), data, training at smoke size, checkpoints, analysis
helpers, command line and exercise check."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit import runner
from labkit.check import CheckFailed
from labkit.cli import main
from labkit.engine import predict
from labkit.errors import DataError, UsageError
from labkit.lab import LabConfig
from labkit.labs import cifar10 as lab
from labkit.labs.cifar10 import data as cifar
from labkit.labs.cifar10 import milestone_epochs
from labkit.labs.cifar10.check import check_test_loop, probe_answer
from labkit.labs.cifar10.data import CIFAR10Split
from labkit.optim import make_optimizer, make_scheduler


def epoch_lrs(cfg, steps: int = 391) -> list[float]:
    opt = make_optimizer(cfg, nn.Linear(2, 2))
    sched, interval = make_scheduler(cfg, opt, steps)
    lrs = []
    for _ in range(cfg.epochs):
        lrs.append(opt.param_groups[0]["lr"])
        for _ in range(steps if interval == "step" else 1):
            opt.step()
            sched.step()
    return lrs


# --- config: recipes, sizes, schedules ---------------------------------------------------------------------

def test_course_recipe_is_the_course_script():
    cfg = lab.LAB.config("full", "course")
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (0.1, 0.9, 5e-4, 128, 10)
    assert not cfg.nesterov and cfg.label_smoothing == 0 and cfg.optimizer == "sgd"
    assert cfg.depth == 20 and cfg.train_subset is None and not cfg.decay_matrices_only
    assert lab.LAB.config("full") == cfg  # the default recipe


def test_course_lr_switches_from_0_1_to_0_01_at_epoch_5():
    cfg = lab.LAB.config("full", "course")
    lrs = epoch_lrs(cfg)
    assert lrs[:5] == [0.1] * 5
    assert lrs[5:] == pytest.approx([0.01] * 5)
    assert milestone_epochs(cfg) == [5] and lab.lr_drops(cfg) == [5.5]
    assert cfg.at_epochs == (5, 10)  # the weights at the drop and at the end are kept
    assert lab.LAB.config("full", epochs=20).at_epochs == (10, 20)


def test_fast_recipe_warms_up_then_anneals_per_step():
    cfg = lab.LAB.config("full", "fast")
    assert cfg.nesterov and cfg.label_smoothing > 0 and cfg.epochs == 10 and cfg.batch_size == 128
    assert cfg.weight_decay == 5e-4 and cfg.momentum == 0.9
    opt = make_optimizer(cfg, nn.Linear(2, 2))
    sched, interval = make_scheduler(cfg, opt, 100)
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
    assert lab.lr_drops(cfg) == [] and cfg.at_epochs == (5, 10)


def test_unknown_recipe_is_a_clear_error():
    with pytest.raises(UsageError, match="course, fast"):
        lab.LAB.config("full", "slow")


def test_sizes_exist_and_validate():
    smoke, laptop, full = (lab.LAB.config(size) for size in ("smoke", "laptop", "full"))
    assert (smoke.depth, smoke.epochs, smoke.batch_size) == (8, 4, 32)
    assert lab.SYNTHETIC == (192, 128)  # the old smoke data: generated train / test images
    # laptop: the course's experiment (ResNet-20, all training images, 10 epochs); its comparisons smaller
    assert laptop.data is None and laptop.depth == 20 and laptop.train_subset is None and laptop.epochs == 10
    small = lab.LAB.comparison(laptop)
    assert (small.depth, small.train_subset, small.epochs, small.lr) == (8, 5_000, 10, 0.1)
    assert lab.LAB.comparison(full) == full and lab.LAB.comparison(smoke) == smoke
    assert laptop.lr == 0.1 and laptop.schedule == "multistep"  # the course's schedule: the drop shows
    assert full.depth == 20 and full.epochs == 10 and full.train_subset is None and full.holdout == 5000
    for size in ("smoke", "laptop", "full"):
        fast = lab.LAB.config(size, "fast")
        assert fast.schedule == "onecycle" and fast.size == size


@pytest.mark.parametrize("changes, words", [
    ({"depth": 10}, "--depth must be 6n+2"),
    ({"patience": 3}, "--patience"),
    ({"schedule": "plateau"}, "--schedule"),
    ({"holdout": -1}, "--holdout"),
])
def test_impossible_settings_are_refused(changes, words):
    with pytest.raises(UsageError, match=re.escape(words)):
        lab.LAB.config("full", **changes)


# --- data ----------------------------------------------------------------------------------------------

def test_load_data_at_smoke_size_never_touches_a_real_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    data = runner.load_data(lab.LAB, lab.LAB.config("smoke"))
    assert (lab.synthetic_root() / "cifar-10-batches-py" / "data_batch_1").is_file()
    assert not (tmp_path / "cifar-10-batches-py").exists()
    assert "generated" in data.description and "synthetic" in data.description
    assert len(data.source.train) == 192 and len(data.source.eval) == 128
    assert data.split_label("test") == "test (synthetic)"
    assert data.info == {"num_classes": 10, "classes": list(cifar.CLASSES)}
    images, labels = next(iter(data.train))
    assert images.shape == (32, 3, 32, 32) and images.dtype == torch.float32 and labels.shape == (32,)


def test_data_folder_is_read_at_every_size_and_names_the_hold_out(tmp_path):
    root = cifar.write_synthetic_cifar10_folder(tmp_path / "jpeg", n_per_class=12, seed=1)
    data = runner.load_data(lab.LAB, lab.LAB.config("smoke", data=str(root), holdout=30))
    assert data.split_label("test") == "hold-out (30 of train)"
    assert len(data.source.eval) == 30 and len(data.source.train) == 90
    assert "image folder" in data.description and "generated" not in data.description
    assert not (tmp_path / "labkit").exists()
    subset = runner.load_data(lab.LAB, lab.LAB.config("laptop", data=str(root), holdout=30, train_subset=50))
    assert torch.bincount(subset.source.train.labels, minlength=10).tolist() == [5] * 10
    assert "class-balanced subset of 90" in subset.description
    with pytest.raises(UsageError, match="--train-subset"):
        runner.load_data(lab.LAB, lab.LAB.config("laptop", data=str(root), holdout=30, train_subset=89))


def test_a_test_split_is_used_as_it_is(tmp_path):
    root = cifar.write_synthetic_cifar10_folder(tmp_path / "jpeg", n_per_class=6, test_per_class=2)
    data = runner.load_data(lab.LAB, lab.LAB.config("full", data=str(root)))
    assert data.split_label("test") == "test" and len(data.source.eval) == 20 and len(data.source.train) == 60


def test_sharded_loaders_split_the_global_batch(tmp_path):
    from labkit.distributed import DistributedContext

    root = cifar.write_synthetic_cifar10_folder(tmp_path / "jpeg", n_per_class=12)
    ctx = DistributedContext(rank=1, world_size=2, local_rank=1, device=torch.device("cpu"), backend=None)
    data = lab.LAB.load_data(lab.LAB.config("smoke", data=str(root), holdout=20), ctx)
    assert data.train.batch_size == 16 and (data.train.rank, data.train.world_size) == (1, 2)
    assert data.train.num_items == 50 and data.eval["test"].num_items == 10
    with pytest.raises(Exception, match="multiple of 2"):
        lab.LAB.load_data(lab.LAB.config("smoke", data=str(root), holdout=20, batch_size=33), ctx)


def test_full_size_without_data_says_how_to_get_it(tmp_path, capsys):
    with pytest.raises(DataError, match="cifar-10-batches-py.*train/<class>"):
        runner.load_data(lab.LAB, lab.LAB.config("full", data=str(tmp_path)))
    incomplete = tmp_path / "cifar-10-batches-py"
    incomplete.mkdir()
    (incomplete / "data_batch_1").write_bytes(b"")
    with pytest.raises(DataError, match="missing data_batch_2, .*, test_batch, batches.meta"):
        runner.load_data(lab.LAB, lab.LAB.config("full", data=str(tmp_path)))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", "cifar10", "--data", str(empty)]) == 1  # a message, not a traceback
    assert "--download" in capsys.readouterr().err


def test_laptop_size_reads_the_real_image_folder(shared_datasets, tmp_path, monkeypatch):
    if not (shared_datasets / "cifar-10-jpeg" / "train").is_dir():
        pytest.skip("real data not available: cifar-10-jpeg/train is absent")
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("LABKIT_SHARED_DATASETS", str(shared_datasets))
    assert lab.default_root() == shared_datasets
    data = runner.load_data(lab.LAB, lab.LAB.comparison(lab.LAB.config("laptop")))  # the comparisons' 5,000
    assert data.split_label("test") == "hold-out (5,000 of train)"
    assert len(data.source.eval) == 5000 and len(data.source.train) == 5_000
    assert torch.bincount(data.source.train.labels, minlength=10).tolist() == [500] * 10
    assert "cifar-10-jpeg" in data.description and "generated" not in data.description
    train_files = set(data.source.train.files)
    assert train_files and not train_files & set(data.source.eval.files)  # nothing evaluated was trained on


# --- training, checkpoints, reloading ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cifar-smoke")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABKIT_DATA", str(out / "data"))
        cfg = lab.LAB.config("smoke", out=str(out / "run"), tensorboard=False)
        return runner.run(lab.LAB, cfg)


def test_smoke_training_learns_and_drops_the_lr_halfway(smoke_run):
    h = smoke_run.history
    assert h.epoch == [1, 2, 3, 4] and h.lr == pytest.approx([0.1, 0.1, 0.01, 0.01])
    assert lab.lr_drops(smoke_run.config) == [2.5]
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert h.last("test_accuracy") > 0.3  # chance is 0.1
    assert "test_accuracy" in h and "train_accuracy" in h
    assert smoke_run.final["test"]["accuracy"] == pytest.approx(h.last("test_accuracy"))


def test_nothing_is_chosen_by_the_test_split(smoke_run):
    files = sorted(p.name for p in smoke_run.checkpoint_dir.iterdir())
    assert files == ["epoch_002.pt", "epoch_004.pt", "last.pt"]  # the drop, the end; no best.pt
    assert smoke_run.best_checkpoint is None and smoke_run.chosen_epoch == 4
    summary = smoke_run.summary()
    assert not any(key.startswith("best") for key in summary)
    record = json.loads((smoke_run.out_dir / "metrics.json").read_text())
    assert record["chosen_epoch"] == 4 and record["splits"]["test"] == "test (synthetic)"


def test_load_run_rebuilds_the_model_from_the_checkpoint(smoke_run):
    loader = smoke_run.data.eval["test"]
    again = runner.load_run(smoke_run.last_checkpoint)
    assert again.lab == "cifar10" and again.config == smoke_run.config and again.chosen_epoch == 4
    assert again.model.depth == 8 and again.info["num_classes"] == 10
    want, _ = predict(smoke_run.model, loader)
    got, _ = predict(again.model, loader)
    torch.testing.assert_close(got, want)
    at_drop = runner.load_run(smoke_run.checkpoint_dir / "epoch_002.pt")
    assert at_drop.chosen_epoch == 2 and at_drop.history.epoch == [1, 2]


def test_resume_equals_an_uninterrupted_run(smoke_run, tmp_path):
    cfg = smoke_run.config.replace(out=str(tmp_path / "resumed"))
    resumed = runner.run(lab.LAB, cfg, data=smoke_run.data,
                         resume=smoke_run.checkpoint_dir / "epoch_002.pt")
    assert resumed.history.epoch == [1, 2, 3, 4] and resumed.history.lr == smoke_run.history.lr
    assert resumed.history["train_loss"] == pytest.approx(smoke_run.history["train_loss"], rel=1e-5)
    assert resumed.history["test_accuracy"] == pytest.approx(smoke_run.history["test_accuracy"])
    for (name, a), b in zip(smoke_run.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_analysis_figures_name_the_split(smoke_run):
    fig = lab.plot_course_curves(smoke_run)
    assert "smoke size, synthetic data" in fig._suptitle.get_text() and "ResNet-8" in fig._suptitle.get_text()
    labels = {text.get_text() for ax in fig.axes if ax.get_legend() for text in ax.get_legend().get_texts()}
    assert "test (synthetic), monitoring only" in labels and "lr 0.1 → 0.01" in labels
    table = lab.epoch_table(smoke_run)
    assert "test (synthetic) accuracy" in table.splitlines()[0] and len(table.splitlines()) == 6


def test_per_class_accuracy_and_misclassified():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 0, 2])
    acc = lab.per_class_accuracy(preds, labels, num_classes=4)
    assert acc[:3].tolist() == [0.5, 1.0, 0.5] and torch.isnan(acc[3])
    split = CIFAR10Split(torch.zeros(6, 3, 32, 32, dtype=torch.uint8), labels, tuple("abcdefghij"))
    images, titles = lab.misclassified(preds, split, count=5)
    assert images.shape[0] == 2 and titles == ["a → b", "c → a"]


# --- command line ------------------------------------------------------------------------------------------

def test_cli_help_lists_the_config_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "cifar10", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--depth", "--holdout", "--train-subset", "--compile", "--download", "--recipe", "--size",
                 "--epochs", "--lr", "--batch-size", "--data", "--resume"):
        assert flag in out
    assert "6n+2" in out and "smoke 8" in out and "course, fast" in out
    assert "--patience " not in out and "--patience-lr" not in out


def test_cli_runs_at_smoke_size(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "cifar10", "--smoke", "--epochs", "2", "--recipe", "fast", "--out", str(out),
                 "--no-tensorboard"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["summary"]["recipe"] == "fast" and metrics["config"]["epochs"] == 2
    assert len(metrics["history"]["epoch"]) == 2 and metrics["config"]["schedule"] == "onecycle"
    for name in ("curves.png", "per_class.png", "misclassified.png", "checkpoints/last.pt",
                 "checkpoints/epoch_001.pt", "checkpoints/epoch_002.pt"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints" / "best.pt").exists()
    printed = capsys.readouterr().out
    assert "test (synthetic) accuracy" in printed and "nothing was chosen by it" in printed


def test_cli_reads_an_image_folder_and_names_the_hold_out(tmp_path, capsys):
    root = cifar.write_synthetic_cifar10_folder(tmp_path / "jpeg", n_per_class=8)
    out = tmp_path / "out"
    assert main(["run", "cifar10", "--smoke", "--data", str(root), "--holdout", "20", "--epochs", "1",
                 "--out", str(out), "--no-tensorboard"]) == 0
    printed = capsys.readouterr().out
    assert "image folder" in printed and "hold-out (20 of train) accuracy" in printed
    assert "smoke size, synthetic data" not in lab.run_title(runner.load_run(out / "checkpoints" / "last.pt"))
    record = json.loads((out / "metrics.json").read_text())
    assert record["splits"]["test"] == "hold-out (20 of train)" and "hold-out" in record["data"]


@pytest.mark.parametrize("argv, words", [
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--depth", "abc"], "--depth"),
    (["--holdout", "-5"], "--holdout must be at least 0"),
])
def test_cli_bad_values_exit_2_naming_the_option(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "cifar10", "--smoke", *argv])
    assert exit_.value.code == 2 and words in capsys.readouterr().err


def test_cli_impossible_depth_is_a_usage_error(capsys):
    assert main(["run", "cifar10", "--smoke", "--depth", "10"]) == 2
    assert "--depth must be 6n+2" in capsys.readouterr().err


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


def test_check_knows_the_probes_answer_from_its_construction():
    """16 + 8 of 37 images right, each at cross-entropy ln(100/91) when right and ln 100 when wrong."""
    import math

    loss, accuracy = probe_answer()
    assert accuracy == pytest.approx(24 / 37)
    assert loss == pytest.approx((24 * math.log(100 / 91) + 13 * math.log(100)) / 37)
    from labkit.labs.cifar10.check import _probe_model_and_loader

    model, batches = _probe_model_and_loader()
    assert solution(model, batches, "cpu") == pytest.approx((loss, accuracy))


def test_check_on_a_small_model_and_loader_passes_the_solution():
    model = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(12), nn.Linear(12, 10))
    loader = [(torch.randn(5, 3, 2, 2), torch.randint(0, 10, (5,))) for _ in range(3)]
    check_test_loop(solution, model, loader)


def test_check_refuses_a_sampling_evaluation_by_the_probes_known_answer():
    def sampling(model, loader, device):
        model.eval()
        with torch.no_grad():
            outs = [(model(x), y) for x, y in loader]
        correct = sum((torch.multinomial(o.softmax(1), 1).squeeze(1) == y).sum().item() for o, y in outs)
        n = sum(len(y) for _, y in outs)
        return sum(F.cross_entropy(o, y, reduction="sum").item() for o, y in outs) / n, correct / n

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 10))
    loader = [(torch.randn(50, 3, 2, 2), torch.randint(0, 10, (50,))) for _ in range(3)]
    check_test_loop(solution, model, loader)
    with pytest.raises(CheckFailed, match="expected"):  # the probe's known answer already refuses it
        check_test_loop(sampling, model, loader)


def test_no_model_answer_ships_with_the_check():
    from labkit.labs.cifar10 import check

    assert not hasattr(check, "reference_test")


def test_check_on_the_labs_own_model_and_split(smoke_run):
    check_test_loop(solution, smoke_run.model, smoke_run.data.eval["test"], "cpu")


def test_milestone_epochs_for_plots():
    assert milestone_epochs(LabConfig(epochs=10, schedule="multistep")) == [5]
    assert milestone_epochs(LabConfig(epochs=9, schedule="step", step_size=3)) == [3, 6]
    assert milestone_epochs(LabConfig(epochs=9, schedule="cosine")) == []
