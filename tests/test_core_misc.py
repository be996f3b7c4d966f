"""Device/seed helpers, History, plots, widgets, TensorBoard, layer tables and the CLI."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from labkit.device import describe_device, pick_device, rng_state, seed_everything, set_rng_state
from labkit.errors import LabkitError
from labkit.history import History


@pytest.mark.parametrize("argv, env, message", [
    (["--device", "cuda"], None, "--device 'cuda': CUDA is not available"),
    ([], "banana", "LABKIT_DEVICE 'banana' is not a device"),
])
def test_bad_devices_are_one_line_errors_from_the_cli(argv, env, message, monkeypatch, capsys, tmp_path):
    from labkit import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if env:
        monkeypatch.setenv("LABKIT_DEVICE", env)
    code = cli.main(["run", "function-fitting", "--smoke", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code != 0 and f"labkit: error: {message}" in err and "Traceback" not in err and "cpu" in err


def test_pick_device_order_and_override(monkeypatch):
    monkeypatch.delenv("LABKIT_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        expected = "mps"
    assert pick_device().type == expected
    monkeypatch.setenv("LABKIT_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")
    assert pick_device("cpu").type == "cpu"
    with pytest.raises(LabkitError, match="'tpu' is not a device.*Available here: .*cpu"):
        pick_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LabkitError, match="--device 'cuda': CUDA is not available.*Available here: .*cpu"):
        pick_device("cuda")
    assert describe_device("cpu").startswith("cpu (") and "torch" in describe_device("cpu")


def test_rng_state_round_trip_restores_every_generator():
    seed_everything(7)
    state = rng_state()
    first = (random.random(), float(np.random.rand()), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == first


def test_history_round_trip_best_and_padding():
    h = History()
    h.append(1, 0.1, 1.0, {"train_loss": 2.0, "val_accuracy": 0.5})
    h.append(2, 0.1, 1.0, {"train_loss": 1.0, "val_accuracy": 0.7})
    h.append(3, 0.01, 1.0, {"train_loss": 0.5, "val_accuracy": 0.6, "test_accuracy": 0.9})
    assert h.best("train_loss") == (3, 0.5) and h.best("val_accuracy") == (2, 0.7)
    assert len(h["test_accuracy"]) == 3 and h["test_accuracy"][-1] == 0.9
    again = History.from_dict(h.to_dict())
    assert again.to_dict() == h.to_dict()
    with pytest.raises(KeyError, match="has no 'val_loss'"):
        h["val_loss"]
    assert "| epoch |" in h.table(["train_loss"])
    assert list(h) == ["train_loss", "val_accuracy", "test_accuracy"] and len(h) == 3  # keys, like a dict


def test_plot_history_and_live_plot_write_pngs(tmp_path):
    from labkit.plots import LivePlot, plot_curves, plot_history

    h = History()
    for e in range(1, 4):
        h.append(e, 0.1, 1.0, {"train_loss": 1 / e, "val_loss": 1.2 / e, "val_accuracy": e / 4})
    fig = plot_history(h, path=tmp_path / "h.png", mark_epochs=[2], mark_label="lr drop")
    assert len(fig.axes) == 2 and (tmp_path / "h.png").stat().st_size > 1000
    plot_curves({"a": h, "b": h}, "val_accuracy", path=tmp_path / "c.png")
    assert (tmp_path / "c.png").exists()

    class FakeImage:
        value = b""

    image = FakeImage()
    live = LivePlot(image=image, every_seconds=0.0, path=tmp_path / "live.png")
    from labkit.callbacks import Progress
    from labkit.engine import fit
    from tests.helpers import classifier, loaders

    train, val = loaders()
    model = classifier()
    fit(model, train, epochs=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), eval_data=val,
        callbacks=[live, Progress(False)])
    assert image.value.startswith(b"\x89PNG") and live.draws >= 2 and (tmp_path / "live.png").exists()


def test_training_panel_trains_default_once_and_surfaces_errors():
    from labkit.widgets import TrainingPanel

    calls = []

    def train(epochs, lr, plot):
        calls.append((epochs, lr))
        history = History()
        history.append(1, lr, 0.1, {"train_loss": 0.25, "val_accuracy": 0.75})
        return history

    panel = TrainingPanel(train, epochs=5, lr=0.01, epoch_choices=[1, 5, 10])
    panel.show()
    assert calls == [(5, 0.01)] and panel.runs == 1
    assert "train_loss 0.25" in panel.status.value and "val_accuracy 0.75" in panel.status.value
    panel.epochs.value = 10
    panel.lr.value = 0.1
    panel.button.click()
    assert calls[-1] == (10, pytest.approx(0.1)) and panel.runs == 2

    def broken(epochs, lr, plot):
        raise RuntimeError("shape mismatch in your model")

    failing = TrainingPanel(broken, epochs=1, lr=0.1)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        failing.show()  # the headless path raises into the cell
    failing.button.click()  # a click cannot raise: the error is kept and shown
    assert isinstance(failing.error, RuntimeError) and "failed" in failing.status.value


def test_tensorboard_logs_scalars_hparams_and_graph(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from labkit.callbacks import Progress
    from labkit.engine import fit
    from labkit.tensorboard import TensorBoardLogger
    from tests.helpers import classifier, loaders

    train, val = loaders()
    model = classifier()
    logger = TensorBoardLogger(tmp_path / "tb", hparams={"lr": 0.1, "note": None}, graph_input=torch.zeros(2, 8))
    fit(model, train, epochs=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), eval_data=val,
        metrics=("accuracy",), callbacks=[logger, Progress(False)])
    assert "TensorBoard logs:" in capsys.readouterr().out
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    tags = events.Tags()["scalars"]
    assert {"loss/train", "loss/val", "accuracy/val", "lr"} <= set(tags)
    assert [s.step for s in events.Scalars("loss/val")] == [1, 2]
    assert events.Tags()["graph"]


def test_graph_fallback_writes_text_and_says_so(tmp_path, capsys):
    from torch.utils.tensorboard import SummaryWriter

    from labkit.tensorboard import add_graph_or_summary

    class Untraceable(nn.Module):
        def forward(self, x):
            return {"out": x.tolist()}  # not traceable

    writer = SummaryWriter(str(tmp_path))
    assert add_graph_or_summary(writer, Untraceable(), torch.zeros(1, 2)) is False
    writer.close()
    assert "wrote a text summary" in capsys.readouterr().out


def test_layer_table_names_shapes_and_params():
    from labkit.summary import layer_table

    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    table = layer_table(model, (3, 8, 8))
    assert table.row("0").output_shape == (8, 4, 4)
    assert table.row("3").output_shape == (10,) and table.row("3").params == 8 * 16 * 10 + 10
    assert table.total_params == sum(p.numel() for p in model.parameters())
    assert "total parameters" in str(table)


def test_cli_smoke_runs_function_fitting(tmp_path, capsys):
    from labkit.cli import main

    assert main(["smoke", "--out", str(tmp_path), "function-fitting"]) == 0
    assert (tmp_path / "metrics.md").exists() and (tmp_path / "function-fitting" / "lr_sweep.png").exists()
    assert "function-fitting" in capsys.readouterr().out


def test_cli_size_option_builds_that_size():
    """`--size laptop` reaches `lab.config` once (as the size), not a second time among the given fields."""
    from labkit.cli import config_from_args, lab_parser
    from labkit.lab import get_lab

    lab = get_lab("function-fitting")
    cfg = config_from_args(lab, lab_parser(lab).parse_args(["--size", "laptop", "--epochs", "3"]))
    assert (cfg.size, cfg.epochs) == ("laptop", 3)
