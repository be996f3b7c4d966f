"""Lab 04 experiment: training with checkpoints and TensorBoard, resume, evaluate-only, comparison,
ablations, the layer table, and the CLI — all at smoke size on synthetic data."""

from __future__ import annotations

import csv

import pytest
import torch

from labkit.checkpoint import CheckpointError, load_checkpoint
from labkit.data.tiny_imagenet import tiny_imagenet_loaders, write_synthetic_tiny_imagenet
from labkit.experiments import tiny_imagenet as lab
from labkit.models.resnet import resnet18
from labkit.summary import layer_table


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny_exp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABKIT_DATA", str(base / "data"))
        root = write_synthetic_tiny_imagenet(base, n_classes=6, n_train_per_class=12, n_val_per_class=5, seed=2)
        yield tiny_imagenet_loaders(root, batch_size=24, verbose=False)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_run")
    return lab.train_tiny_imagenet(data, arch="resnet10", width=8, epochs=3, lr=0.05, out_dir=out,
                                   at_epochs=(1, 2), progress=False, device="cpu")


def test_training_learns_and_writes_checkpoints_and_tensorboard(run):
    history = run.history
    assert history.epoch == [1, 2, 3] and not history.diverged
    assert history["train_loss"][-1] < history["train_loss"][0]
    for key in ("train_top5", "val_accuracy", "val_top5", "val_loss"):
        assert key in history
    names = sorted(p.name for p in run.checkpoint_dir.iterdir())
    assert names == ["best.pt", "epoch_001.pt", "epoch_002.pt", "last.pt"]
    best_epoch, _ = history.best("val_accuracy")
    assert load_checkpoint(run.checkpoint_dir / "best.pt").epoch == best_epoch
    assert load_checkpoint(run.checkpoint_dir / "last.pt").config["arch"] == "resnet10"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.run_dir / "tensorboard"))
    events.Reload()
    assert {"loss/train", "loss/val", "accuracy/val", "top5/val"} <= set(events.Tags()["scalars"])
    assert events.Tags()["graph"], "the model graph was not written"


def test_resume_continues_exactly(run, data, tmp_path):
    resumed = lab.train_tiny_imagenet(data, arch="resnet10", width=8, epochs=3, lr=0.05, out_dir=tmp_path,
                                      resume_from=run.checkpoint_dir / "epoch_002.pt", progress=False,
                                      device="cpu", tensorboard=False)
    assert resumed.history.epoch == [1, 2, 3]
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert resumed.history[key] == pytest.approx(run.history[key], rel=1e-4, abs=1e-5)


def test_evaluate_only_reproduces_the_checkpoints_numbers(run, data):
    result = lab.evaluate_checkpoint(run.checkpoint_dir / "best.pt", data)
    epoch, best = run.history.best("val_accuracy")
    assert result["accuracy"] == pytest.approx(best)
    assert result["top5"] == pytest.approx(run.history["val_top5"][epoch - 1])


def test_compare_two_checkpoints_writes_csv_and_grid(run, data, tmp_path):
    ckpts = run.checkpoint_dir
    result = lab.compare_checkpoints(ckpts / "epoch_001.pt", ckpts / "epoch_002.pt", data, tmp_path)
    assert result.total == 30
    assert result.accuracy_a == pytest.approx(run.history["val_accuracy"][0])
    assert result.accuracy_b == pytest.approx(run.history["val_accuracy"][1])
    with result.csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(result.rows)
    assert all(r["prediction_a"] != r["prediction_b"] for r in rows)
    assert all(r["image"].startswith("val_") and r["true_class"].startswith("synthetic class") for r in rows)
    assert result.grid.stat().st_size > 1000
    same = lab.compare_checkpoints(ckpts / "last.pt", ckpts / "last.pt", data, tmp_path / "same")
    assert same.rows == [] and same.accuracy_a == same.accuracy_b


def test_ablation_at_smoke_size(data, tmp_path):
    result = lab.run_ablations(data, {"baseline": {}, "no residual": {"residual": False},
                                      "ResNet-10 no BN": {"depth": 10, "batch_norm": False}},
                               epochs=1, lr=0.05, width=4, depth=10, out_dir=tmp_path, device="cpu")
    rows = {row["variant"]: row for row in result.rows()}
    assert set(rows) == {"baseline", "no residual", "ResNet-10 no BN"}
    assert all(0.0 <= row["final_val_accuracy"] <= 1.0 for row in rows.values())
    assert (tmp_path / "results.md").is_file() and (tmp_path / "curves_val_accuracy.png").is_file()


def test_course_layer_table_matches_the_course():
    table = layer_table(resnet18(num_classes=200), (3, 64, 64))
    assert table.row("conv1").output_shape == (64, 32, 32)
    assert table.row("maxpool").output_shape == (64, 16, 16)
    assert table.row("layer4").output_shape == (512, 2, 2)
    assert table.row("fc").output_shape == (200,)
    assert table.total_params == 11_279_112


def test_time_budget_stops_early(data):
    run = lab.train_tiny_imagenet(data, arch="resnet10", width=4, epochs=50, time_budget=0.0, progress=False,
                                  device="cpu")
    assert run.history.epoch == [1] and "time budget" in run.history.stop_reason


def test_schedules():
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    step, interval = lab.make_scheduler(opt, "step", epochs=9, steps_per_epoch=5)
    assert interval == "epoch" and step.step_size == 3
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        lab.make_scheduler(opt, "linear", 9, 5)


def test_cli(tmp_path, capsys, run):
    from labkit.cli import main

    assert main(["run", "tiny-imagenet", "--evaluate"]) == 2
    assert "--resume CKPT --evaluate" in capsys.readouterr().err
    assert main(["run", "tiny-imagenet", "--data", str(tmp_path / "absent")]) == 1
    assert "data_prep.tiny_imagenet" in capsys.readouterr().err
    assert main(["run", "tiny-imagenet", "--smoke", "--epochs", "1", "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "checkpoints" / "last.pt").is_file() and (tmp_path / "r" / "curves.png").is_file()
    assert main(["run", "tiny-imagenet", "--smoke", "--resume", str(tmp_path / "r" / "checkpoints" / "last.pt"),
                 "--evaluate"]) == 0
    assert "top-5" in capsys.readouterr().out
    # the run's cosine schedule was planned for 1 epoch: resuming it for 3 would bend it
    assert main(["run", "tiny-imagenet", "--smoke", "--resume", str(tmp_path / "r" / "checkpoints" / "last.pt"),
                 "--epochs", "3"]) == 1
    assert "planned for 1 epochs" in capsys.readouterr().err
    assert main(["run", "tiny-imagenet", "--smoke", "--resume", str(tmp_path / "nope.pt"), "--evaluate"]) == 1
    assert "No checkpoint at" in capsys.readouterr().err
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    assert main(["compare", str(last), str(last), "--smoke", "--out", str(tmp_path / "c")]) == 0
    assert "0 of 60 val images" in capsys.readouterr().out


def test_checkpoint_from_another_lab_is_refused(tmp_path, data):
    from labkit.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "x.pt", model=torch.nn.Linear(2, 2), config={"lab": "other"})
    with pytest.raises(CheckpointError, match="not written by labkit's tiny-imagenet lab"):
        lab.evaluate_checkpoint(tmp_path / "x.pt", data)
