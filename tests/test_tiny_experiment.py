"""Lab 04 experiment: training with checkpoints and TensorBoard, resume, evaluate-only, load_run,
comparison, ablations, sizes, the layer table, the CLI and torchrun — at smoke size on generated data."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labkit import runner
from labkit.checkpoint import load_checkpoint, write_atomic
from labkit.engine import predict
from labkit.errors import CheckpointError, DataError, LabkitError, UsageError
from labkit.labs import tiny_imagenet as lab
from labkit.labs.tiny_imagenet.data import write_synthetic_tiny_imagenet
from labkit.labs.tiny_imagenet.model import resnet18
from labkit.summary import layer_table

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_tiny_imagenet(tmp_path_factory.mktemp("tiny_exp"), n_classes=6, n_train_per_class=12,
                                         n_val_per_class=5, seed=2)


@pytest.fixture(scope="module")
def cfg(root, tmp_path_factory):
    return lab.LAB.config("smoke", data=str(root), arch="resnet10", width=8, epochs=3, lr=0.05, batch_size=24,
                          at_epochs=(1, 2), device="cpu", out=str(tmp_path_factory.mktemp("tiny_run")))


@pytest.fixture(scope="module")
def data(cfg, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABKIT_DATA", str(tmp_path_factory.mktemp("tiny_cache")))
        yield runner.load_data(lab.LAB, cfg)


@pytest.fixture(scope="module")
def run(cfg, data):
    return runner.run(lab.LAB, cfg, data=data, progress=False)


def test_training_learns_and_writes_checkpoints_and_tensorboard(run, data):
    history = run.history
    assert history.epoch == [1, 2, 3] and not history.diverged
    assert history["train_loss"][-1] < history["train_loss"][0]
    for key in ("train_top5", "val_accuracy", "val_top5", "val_loss"):
        assert key in history
    names = sorted(p.name for p in run.checkpoint_dir.iterdir())
    assert names == ["best.pt", "epoch_001.pt", "epoch_002.pt", "last.pt"]
    best_epoch, _ = history.best("val_accuracy")
    assert load_checkpoint(run.best_checkpoint).epoch == best_epoch == run.chosen_epoch
    saved = load_checkpoint(run.last_checkpoint).config
    assert saved["lab"] == "tiny-imagenet" and saved["arch"] == "resnet10" and saved["model_info"]["num_classes"] == 6
    assert (run.out_dir / "curves.png").is_file()
    record = json.loads((run.out_dir / "metrics.json").read_text())
    assert record["summary"]["best_val_accuracy"] == pytest.approx(history.best("val_accuracy")[1])
    assert "6 classes" in record["data"] and "generated" not in record["data"]  # cfg.data: the test's own folder
    assert data.train.batch_size == 24 and data.info["num_classes"] == 6

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.out_dir / "tensorboard"))
    events.Reload()
    assert {"loss/train", "loss/val", "accuracy/val", "top5/val"} <= set(events.Tags()["scalars"])
    assert events.Tags()["graph"], "the model graph was not written"


def test_resume_trains_further_and_continues_exactly(run, cfg, data, tmp_path):
    resumed = runner.run(lab.LAB, cfg.replace(out=str(tmp_path), tensorboard=False), data=data,
                        resume=run.checkpoint_dir / "epoch_001.pt", progress=False)
    assert resumed.history.epoch == [1, 2, 3]  # epoch 1 from the checkpoint, epochs 2 and 3 trained again
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert resumed.history[key] == pytest.approx(run.history[key], rel=1e-4, abs=1e-5)


def test_evaluate_only_reproduces_the_checkpoints_numbers(run, data):
    result = lab.evaluate_checkpoint(run.best_checkpoint, data)
    epoch, best = run.history.best("val_accuracy")
    assert result["accuracy"] == pytest.approx(best)
    assert result["top5"] == pytest.approx(run.history["val_top5"][epoch - 1])
    alone = lab.evaluate_checkpoint(run.best_checkpoint)  # the data from the checkpoint's own config
    assert alone == pytest.approx(result)


def test_load_run_rebuilds_the_model_from_the_checkpoint_alone(run, data):
    again = runner.load_run(run.best_checkpoint)
    assert again.lab == "tiny-imagenet" and again.config.arch == "resnet10" and again.config.width == 8
    assert again.info["num_classes"] == 6 and again.info["class_names"] == data.source.class_names
    assert again.chosen_epoch == run.chosen_epoch
    mine, _ = predict(run.model, data.eval["val"])  # the runner left the best checkpoint's weights in it
    theirs, targets = predict(again.model, data.eval["val"])
    assert len(targets) == 30
    torch.testing.assert_close(theirs, mine)


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


def test_ablation_at_smoke_size(cfg, data, tmp_path):
    base = cfg.replace(ablation_epochs=1, ablation_width=4, ablation_depth=10)
    result = lab.run_ablations(base, data, {"baseline": {}, "no residual": {"residual": False},
                                            "ResNet-18 no BN": {"depth": 18, "batch_norm": False}},
                               out_dir=tmp_path)
    rows = {row["variant"]: row for row in result.rows()}
    assert set(rows) == {"baseline", "no residual", "ResNet-18 no BN"}
    assert all(row["epochs"] == 1 and 0.0 <= row["final_val_accuracy"] <= 1.0 for row in rows.values())
    assert (tmp_path / "results.md").is_file() and (tmp_path / "curves_val_accuracy.png").is_file()


def test_ablation_variants_are_config_overrides(cfg):
    assert set(lab.ABLATIONS) == {"baseline", "dropout 0.3", "no batch norm", "no lr decay", "no residual",
                                  "ResNet-10", "ResNet-34"}
    base = lab.ablation_config(cfg, {})
    assert (base.arch, base.epochs, base.width) == ("resnet18", cfg.ablation_epochs, cfg.ablation_width)
    assert lab.ablation_config(cfg, lab.ABLATIONS["ResNet-34"]).arch == "resnet34"
    assert lab.ablation_config(cfg, lab.ABLATIONS["no lr decay"]).schedule == "constant"
    assert lab.ablation_config(cfg.replace(arch="resnet10-64"), {"depth": 34}).arch == "resnet34-64"
    with pytest.raises(UsageError, match="no field colour"):
        lab.ablation_config(cfg, {"colour": "red"})


def test_course_layer_table_matches_the_course():
    table = layer_table(resnet18(num_classes=200), (3, 64, 64))
    assert table.row("conv1").output_shape == (64, 32, 32)
    assert table.row("maxpool").output_shape == (64, 16, 16)
    assert table.row("layer4").output_shape == (512, 2, 2)
    assert table.row("fc").output_shape == (200,)
    assert table.total_params == 11_279_112


def test_time_budget_stops_early_with_a_checkpoint_to_resume(cfg, data, tmp_path):
    run = runner.run(lab.LAB, cfg.replace(width=4, epochs=50, time_budget=1e-3, out=str(tmp_path)), data=data,
                     progress=False)
    assert len(run.history) < 50 and "time budget" in run.history.stop_reason
    assert "resume with --resume" in run.history.stop_reason and run.last_checkpoint is not None


def test_schedules_map_onto_labkit_optim():
    from labkit.optim import make_optimizer, make_scheduler

    model = torch.nn.Linear(2, 2)
    full = lab.LAB.config("full")
    assert (full.schedule, full.lr, full.momentum, full.weight_decay) == ("cosine", 0.1, 0.9, 5e-4)
    optimizer = make_optimizer(full, model)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["weight_decay"] == 5e-4
    cosine, interval = make_scheduler(full, optimizer, steps_per_epoch=5)
    assert interval == "epoch" and isinstance(cosine, torch.optim.lr_scheduler.CosineAnnealingLR)
    assert cosine.T_max == 10
    step, interval = make_scheduler(full.replace(schedule="step", epochs=9), optimizer, 5)
    assert interval == "epoch" and step.step_size == 3 and step.gamma == 0.1
    onecycle, interval = make_scheduler(full.replace(schedule="onecycle"), make_optimizer(full, model), 5)
    assert interval == "step" and onecycle.total_steps == 50 and not onecycle.cycle_momentum
    assert onecycle._schedule_phases[0]["end_step"] == pytest.approx(0.15 * 50 - 1)
    assert make_scheduler(full.replace(schedule="constant"), optimizer, 5) == (None, "epoch")
    with pytest.raises(UsageError, match="--schedule must be one of cosine, step, onecycle, constant, not 'none'"):
        lab.LAB.config("full", schedule="none")


def test_sizes_exist_and_validate(monkeypatch):
    smoke, laptop, full = (lab.LAB.config(size) for size in ("smoke", "laptop", "full"))
    assert (smoke.arch, smoke.width, smoke.epochs, smoke.batch_size, smoke.at_epochs) == ("resnet10", 8, 3, 32, (1, 2))
    assert (full.arch, full.width, full.epochs, full.batch_size, full.at_epochs) == ("resnet18", 64, 10, 128, (5, 10))
    assert full.model_options() == {} and type(lab.LAB.build_model(full, {"num_classes": 200})).__name__ == "ResNet"
    # laptop: the standard ResNet-18 (the course's model) for the companion report's 15 epochs on the data present
    assert (laptop.arch, laptop.width, laptop.epochs, laptop.train_per_class) == ("resnet18", 64, 15, 50)
    assert laptop.model_options() == {} and laptop.size == "laptop" and laptop.ablation_width == 8
    assert max(laptop.at_epochs) <= laptop.epochs and max(full.at_epochs) <= full.epochs
    params = sum(p.numel() for p in lab.LAB.build_model(laptop, {"num_classes": 200}).parameters())
    assert params == 11_279_112  # ResNet18 with a 200-way head (the dataset README's figure)
    from labkit import config

    monkeypatch.setattr(config, "shared_datasets", lambda: Path("/nonexistent"))
    with pytest.raises(FileNotFoundError, match="data_prep.tiny_imagenet"):  # laptop: real data, never generated
        lab.find_root(laptop)
    assert lab.find_root(smoke).name == "tiny-imagenet-200"  # smoke: generated under LABKIT_DATA


def test_laptop_size_finds_the_real_subset(shared_datasets):
    assert lab.find_root(lab.LAB.config("laptop")) == shared_datasets / "tiny-imagenet-200"


def test_bad_settings_are_refused():
    with pytest.raises(UsageError, match="--pretrained"):
        lab.LAB.config("full", pretrained=True, width=32)
    with pytest.raises(UsageError, match="--pretrained"):
        lab.LAB.config("full", pretrained=True, arch="resnet34")
    with pytest.raises(UsageError, match="--dropout must be at most"):
        lab.LAB.config("full", dropout=1.0)
    with pytest.raises(UsageError, match="no setting depth"):
        lab.LAB.config("full", depth=10)


def test_a_checkpoints_config_never_fetches_pretrained_weights(monkeypatch):
    from labkit.labs.tiny_imagenet import model as resnet

    def offline():
        raise DataError("no internet here")

    monkeypatch.setattr(resnet, "_imagenet_state_dict", offline)
    fresh = lab.LAB.config("full", pretrained=True)
    with pytest.raises(DataError):
        lab.LAB.build_model(fresh, {"num_classes": 200})
    restored = lab.Config.from_dict(fresh.to_dict())  # what load_run and --resume rebuild from
    assert restored.pretrained and restored.from_checkpoint
    assert lab.LAB.build_model(restored, {"num_classes": 200}).fc.out_features == 200


def test_cli_help_lists_the_config_options(capsys):
    from labkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "tiny-imagenet", "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--arch", "--width", "--dropout", "--no-batch-norm", "--no-residual", "--pretrained",
                 "--train-per-class", "--val-per-class", "--time-budget", "--schedule", "--at-epochs",
                 "--evaluate", "--resume CKPT", "--size"):
        assert flag in out, flag
    assert "smoke 8)" in out  # the width of each size that differs from the default
    assert "--ablation-epochs" not in out and "--from-checkpoint" not in out and "--milestones" not in out


@pytest.mark.parametrize("argv, option", [(["--batch-size", "0"], "--batch-size"), (["--dropout", "1.5"], "--dropout"),
                                          (["--schedule", "none"], "--schedule"), (["--arch", "vgg"], "--arch")])
def test_cli_bad_values_exit_2_naming_the_option(capsys, argv, option):
    from labkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "tiny-imagenet", "--smoke", *argv])
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err


def test_cli(tmp_path, capsys, monkeypatch):
    from labkit.cli import main

    assert main(["run", "tiny-imagenet", "--evaluate"]) == 2
    assert "--resume CKPT --evaluate" in capsys.readouterr().err
    assert main(["run", "tiny-imagenet", "--data", str(tmp_path / "absent")]) == 1
    assert "data_prep.tiny_imagenet" in capsys.readouterr().err
    argv = ["run", "tiny-imagenet", "--smoke", "--epochs", "1", "--at-epochs", "1", "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    out = tmp_path / "r"
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "curves.png").is_file()
    assert "generated smoke data" in json.loads((out / "metrics.json").read_text())["data"]
    last = out / "checkpoints" / "last.pt"
    capsys.readouterr()
    assert main(["run", "tiny-imagenet", "--resume", str(last), "--evaluate"]) == 0
    assert "top-5" in capsys.readouterr().out
    # the run's cosine schedule was planned for 1 epoch: resuming it for 3 would bend it
    assert main(["run", "tiny-imagenet", "--smoke", "--resume", str(last), "--epochs", "3"]) == 1
    assert "planned for 1 epochs" in capsys.readouterr().err
    assert main(["run", "tiny-imagenet", "--smoke", "--resume", str(tmp_path / "nope.pt"), "--evaluate"]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err
    # compare: the checkpoints know they are smoke-size, so they find their generated data
    assert main(["compare", str(last), str(last), "--out", str(tmp_path / "c")]) == 0
    assert "0 of 60 val images" in capsys.readouterr().out
    assert (tmp_path / "c" / "disagreements.csv").is_file() and (tmp_path / "c" / "disagreements.png").is_file()
    # a laptop-size checkpoint trained on the default folder, compared where that folder is absent
    ckpt = load_checkpoint(last)
    payload = {**ckpt.payload, "config": {**ckpt.config, "size": "laptop", "data": None}}
    laptop = write_atomic(payload, tmp_path / "laptop.pt")
    from labkit import config

    monkeypatch.setattr(config, "shared_datasets", lambda: None)
    assert main(["compare", str(laptop), str(laptop)]) == 1
    assert "pass --data PATH" in capsys.readouterr().err
    assert main(["compare", str(laptop), str(last), "--data", str(lab.smoke_data_root()),
                 "--out", str(tmp_path / "c2")]) == 0


def test_labkit_smoke_runs_the_lab(tmp_path):
    from labkit.cli import main

    assert main(["smoke", "--out", str(tmp_path), "tiny-imagenet"]) == 0
    done = tmp_path / "tiny-imagenet"
    assert (done / "curves.png").is_file() and (done / "compare" / "disagreements.png").is_file()
    record = json.loads((tmp_path / "metrics.json").read_text())["labs"]["tiny-imagenet"]
    assert record["best_ckpt_val_accuracy"] == pytest.approx(record["best_val_accuracy"], abs=1e-4)


def test_checkpoint_from_another_lab_is_refused(tmp_path, data):
    from labkit.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "x.pt", model=torch.nn.Linear(2, 2), config={"lab": "other"})
    with pytest.raises(CheckpointError, match="not written by labkit's tiny-imagenet lab"):
        lab.evaluate_checkpoint(tmp_path / "x.pt", data)


def test_two_processes_under_torchrun(tmp_path):
    """`torchrun -m labkit run tiny-imagenet`: 2 gloo ranks of batch 16 (global 32), rank 0 writes the files;
    the val figures are all-reduced, so best.pt evaluated in one process gives the same accuracy."""
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=str(REPO), LABKIT_DEVICE="cpu", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "labkit",
               "run", "tiny-imagenet", "--smoke", "--epochs", "2", "--at-epochs", "1", "--no-tensorboard",
               "--out", str(out)]
    done = subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "epoch_001.pt", "last.pt"]
    assert done.stdout.count("best val top-1") == 1, "only rank 0 reports"
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert history["epoch"] == [1, 2]
    best = lab.evaluate_checkpoint(out / "checkpoints" / "best.pt")
    assert best["accuracy"] == pytest.approx(max(history["metrics"]["val_accuracy"]))


def test_a_checkpoint_of_other_classes_is_refused_before_comparing():
    """Same number of classes, other wnids: predictions would be scored against the wrong labels."""
    from labkit.errors import CheckpointError
    from labkit.labs.tiny_imagenet import _check_classes

    wnids, root = ["n01", "n02", "n03"], "/data/tiny"
    _check_classes("a.pt", {"num_classes": 3, "wnids": ["n01", "n02", "n03"]}, wnids, root)
    with pytest.raises(CheckpointError, match="class 1 is n09, the data's is n02"):
        _check_classes("b.pt", {"num_classes": 3, "wnids": ["n01", "n09", "n03"]}, wnids, root)
    with pytest.raises(CheckpointError, match="predicts 4 classes"):
        _check_classes("c.pt", {"num_classes": 4}, wnids, root)


# --- Lab 04's resume, ablation sets and TensorBoard extras, on the same run as above

def test_resume_plan_trains_further_from_an_earlier_epoch(run, data, tmp_path):
    plan = lab.resume_plan(run)
    assert (plan.checkpoint.name, plan.done, plan.epochs, plan.more) == ("epoch_001.pt", 1, 3, 2)
    plan, resumed = lab.resume_further(run, data, tmp_path / "resumed", progress=False)
    assert resumed.history.epoch == [1, 2, 3]  # epoch 1 from the checkpoint, 2 and 3 trained again
    assert resumed.history["val_loss"] == pytest.approx(run.history["val_loss"], rel=1e-4, abs=1e-5)
    with pytest.raises(LabkitError, match="would bend it"):  # cosine: the length is fixed
        lab.resume_plan(run, extra=5)
    with pytest.raises(LabkitError, match="train nothing"):
        lab.resume_plan(run, extra=0)


def test_resume_plan_extends_a_step_schedule_past_its_end(cfg, data, tmp_path):
    short = runner.run(lab.LAB, cfg.replace(schedule="step", epochs=2, at_epochs=(), out=str(tmp_path / "a")),
                       data=data, progress=False)
    plan, longer = lab.resume_further(short, data, tmp_path / "b", extra=2, progress=False)
    assert (plan.checkpoint.name, plan.done, plan.epochs) == ("last.pt", 2, 4)
    assert longer.history.epoch == [1, 2, 3, 4]
    assert longer.history["train_loss"][:2] == pytest.approx(short.history["train_loss"])


def test_ablation_sets_offer_the_depth_34_pair(cfg):
    pairs = lab.ABLATION_SETS["depth-pairs"]
    assert set(pairs) == {"ResNet-18", "plain-18", "ResNet-34", "plain-34"}
    plain34 = lab.ablation_config(cfg, pairs["plain-34"])
    assert plain34.arch == "resnet34" and plain34.residual is False
    assert lab.ablation_config(cfg, pairs["plain-18"]).arch == "resnet18"
    everything = lab.ABLATION_SETS["all"]
    assert set(lab.ABLATIONS) < set(everything) and "plain-34" in everything
    assert lab.LAB.config("laptop").ablations == "course"
    with pytest.raises(Exception, match="ablations"):
        lab.LAB.config("smoke", ablations="nonsense")


def test_mistakes_and_pr_curves_reach_tensorboard(run, data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    written = lab.write_tensorboard_extras(run, data, tmp_path / "tb", max_images=4, pr_classes=2)
    assert written["total"] == 30 and 0 <= written["mistakes"] <= 30
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0, "images": 0})
    events.Reload()
    tensors = set(events.Tags()["tensors"])
    pr = [t for t in tensors if t.startswith("pr/")]
    assert "pr/all classes" in pr and len(pr) == 3, tensors
    if written["mistakes"]:
        assert written["tags"]["val mistakes"] == min(4, written["mistakes"])
        assert events.Tags()["images"], "no images of mistakes"
    with pytest.raises(LabkitError, match="at least 1"):
        lab.write_tensorboard_extras(run, data, tmp_path / "x", max_images=0)
