"""The training engine: learning happens, schedulers, metrics, divergence, early stopping, resume."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from labkit.callbacks import Callback, EarlyStopping, Progress
from labkit.checkpoint import CheckpointPolicy
from labkit.data.tensor_loader import TensorLoader
from labkit.device import seed_everything
from labkit.engine import Task, evaluate, fit
from labkit.errors import UsageError
from labkit.metrics import accuracy, metric_from_name
from tests.helpers import classifier, loaders


def test_fit_learns_and_records_history():
    seed_everything(0)
    train, val = loaders()
    model = classifier()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    history = fit(model, train, epochs=5, optimizer=opt, eval_data=val, metrics=("accuracy", "top2"),
                  callbacks=[Progress(False)])
    assert history.epoch == [1, 2, 3, 4, 5]
    assert set(history.keys()) == {"train_loss", "train_accuracy", "train_top2", "val_loss",
                                   "val_accuracy", "val_top2"}
    assert history["train_loss"][-1] < history["train_loss"][0] / 2
    assert history.last("val_accuracy") > 0.9
    assert all(t2 >= t1 for t1, t2 in zip(history["val_accuracy"], history["val_top2"]))
    assert len(history.seconds) == 5 and all(s > 0 for s in history.seconds)


def test_evaluate_matches_manual_computation():
    seed_everything(0)
    _, val = loaders()
    model = classifier()
    result = evaluate(model, val, metrics=("accuracy",))
    x, y = val.tensors
    with torch.no_grad():
        logits = model.eval()(x)
    assert result["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert result["accuracy"] == pytest.approx(accuracy(logits, y))


def test_eval_data_mapping_records_every_split():
    train, val = loaders()
    model = classifier()
    history = fit(model, train, epochs=1, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                  eval_data={"val": val, "test": val}, metrics=("accuracy",), callbacks=[Progress(False)])
    assert history["val_accuracy"] == history["test_accuracy"]


def test_epoch_scheduler_changes_lr_after_each_epoch():
    train, _ = loaders()
    model = classifier()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2], gamma=0.1)
    history = fit(model, train, epochs=4, optimizer=opt, scheduler=sched, callbacks=[Progress(False)])
    assert history.lr == pytest.approx([0.1, 0.1, 0.01, 0.01])


def test_step_scheduler_steps_per_batch():
    train, _ = loaders(batch_size=32)  # 192 items -> 6 steps per epoch
    model = classifier()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (step + 1))
    fit(model, train, epochs=2, optimizer=opt, scheduler=sched, scheduler_interval="step", callbacks=[Progress(False)])
    assert sched.last_epoch == 12


def test_plateau_scheduler_gets_monitored_value():
    train, val = loaders()
    model = classifier()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)  # almost no progress -> plateau every epoch
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.25, patience=0, threshold=0.5)
    history = fit(model, train, epochs=3, optimizer=opt, eval_data=val, scheduler=sched, callbacks=[Progress(False)])
    assert history.lr[-1] < history.lr[0]


def test_divergence_stops_with_message_not_exception():
    x = torch.linspace(-4, 4, 100).unsqueeze(1)
    model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    history = fit(model, [(x, 10 * x**2)], epochs=500, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                  loss_fn=nn.MSELoss(), callbacks=[Progress(False)])
    assert history.diverged
    assert len(history) < 500
    assert not math.isfinite(history["train_loss"][-1])
    assert "learning rate 1" in history.stop_reason and "Lower the learning rate" in history.stop_reason


def test_early_stopping_stops_and_says_why():
    train, val = loaders()
    model = classifier()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # nothing improves after epoch 1
    history = fit(model, train, epochs=20, optimizer=opt, eval_data=val,
                  callbacks=[EarlyStopping(patience=2), Progress(False)])
    assert len(history) == 3
    assert "early stopping at epoch 3" in history.stop_reason


def test_early_stopping_counts_from_history():
    from labkit.history import History

    h = History()
    for e, v in enumerate([1.0, 0.5, 0.6, 0.7, 0.4, 0.45], start=1):
        h.append(e, 0.1, 1.0, {"val_loss": v})
    assert EarlyStopping(patience=2).epochs_without_improvement(h, "val_loss") == 1
    h2 = History()
    for e, v in enumerate([0.1, 0.5, 0.9], start=1):
        h2.append(e, 0.1, 1.0, {"val_accuracy": v})
    assert EarlyStopping().epochs_without_improvement(h2, "val_accuracy") == 0


def test_grad_clip_bounds_the_update():
    x = torch.ones(4, 1) * 100
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    fit(model, [(x, -x * 100)], epochs=1, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
        loss_fn=nn.MSELoss(), grad_clip=0.5, callbacks=[Progress(False)])
    assert model.weight.abs().item() == pytest.approx(0.5, rel=1e-4)


def test_callbacks_are_called_and_can_stop():
    calls = []

    class Stopper(Callback):
        def on_fit_start(self, state):
            calls.append("start")

        def on_epoch_end(self, state):
            calls.append(state.epoch)
            state.stop = state.epoch == 2

        def on_fit_end(self, state):
            calls.append("end")

    train, _ = loaders()
    model = classifier()
    fit(model, train, epochs=5, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        callbacks=[Stopper(), Progress(False)])
    assert calls == ["start", 1, 2, "end"]


def test_custom_task_is_used():
    class DoubledInputs(Task):
        def __init__(self):
            self.starts = 0

        def start(self, model, training):
            self.starts += 1

        def __call__(self, model, batch):
            x, y = batch
            out = model(2 * x)
            return nn.functional.cross_entropy(out, y), out, y

    train, val = loaders()
    task = DoubledInputs()
    model = classifier()
    fit(model, train, epochs=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), task=task, eval_data=val,
        callbacks=[Progress(False)])
    assert task.starts == 4  # two training epochs + two evaluations


def test_empty_loader_is_a_clear_error():
    model = classifier()
    empty = TensorLoader(torch.zeros(10, 8), torch.zeros(10, dtype=torch.long), batch_size=32, drop_last=True)
    with pytest.raises(ValueError, match="no batches"):
        fit(model, empty, epochs=1, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), callbacks=[Progress(False)])


def test_unknown_metric_and_bad_interval_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown metric"):
        metric_from_name("f1-score")
    model = classifier()
    with pytest.raises(ValueError, match="scheduler_interval"):
        fit(model, [], epochs=1, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scheduler_interval="batch")


def _run(tmp_path, epochs, resume_from=None, seed=0):
    seed_everything(seed)
    train, val = loaders(seed=0)
    model = classifier(dropout=0.3)  # dropout draws from the torch RNG: resume must restore it
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    history = fit(model, train, epochs=epochs, optimizer=opt, scheduler=sched, eval_data=val,
                  metrics=("accuracy",), callbacks=[CheckpointPolicy(tmp_path / "ckpt"), Progress(False)],
                  resume_from=resume_from)
    return model, opt, history


def test_resume_equals_uninterrupted_run(tmp_path):
    full_model, full_opt, full_history = _run(tmp_path / "a", epochs=4)
    _run(tmp_path / "b", epochs=2)
    # a new "process": different seed, fresh model; everything must come from the checkpoint
    resumed_model, resumed_opt, resumed_history = _run(tmp_path / "b", epochs=4,
                                                       resume_from=tmp_path / "b" / "ckpt" / "last.pt", seed=123)
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed_history.epoch == full_history.epoch == [1, 2, 3, 4]
    assert resumed_history.metrics == full_history.metrics
    assert resumed_history.lr == full_history.lr
    assert resumed_opt.state_dict()["param_groups"][0]["lr"] == full_opt.state_dict()["param_groups"][0]["lr"]


def _sgd(model, lr=0.1):
    return torch.optim.SGD(model.parameters(), lr=lr)


def test_an_optimizer_over_another_models_parameters_is_refused():
    train, _ = loaders()
    with pytest.raises(UsageError, match="does not hold this model's parameters"):
        fit(classifier(), train, epochs=1, optimizer=_sgd(classifier()), callbacks=[Progress(False)])


@pytest.mark.parametrize("clip", [-1.0, 0.0, math.nan])
def test_a_grad_clip_that_is_not_positive_is_refused(clip):
    train, _ = loaders()
    model = classifier()
    with pytest.raises(UsageError, match="grad_clip"):
        fit(model, train, epochs=1, optimizer=_sgd(model), grad_clip=clip, callbacks=[Progress(False)])


def test_a_model_on_the_meta_device_is_a_clear_error():
    train, _ = loaders()
    with torch.device("meta"):
        model = classifier()
    with pytest.raises(UsageError, match=r"meta device.*to_empty"):
        fit(model, train, epochs=1, optimizer=_sgd(model), callbacks=[Progress(False)])


def test_a_float64_model_with_float32_inputs_is_a_clear_error():
    train, val = loaders()
    model = classifier().double()
    with pytest.raises(UsageError, match=r"float64.*float32.*model\.float\(\)"):
        fit(model, train, epochs=1, optimizer=_sgd(model), callbacks=[Progress(False)])
    with pytest.raises(UsageError, match=r"float64.*float32"):
        evaluate(model, val)


def test_one_hot_targets_with_accuracy_are_a_clear_error():
    x, y = torch.randn(40, 8), torch.randint(0, 3, (40,))
    one_hot = TensorLoader(x, nn.functional.one_hot(y, 3).float(), batch_size=3)  # batch == classes: broadcasts
    model = classifier()
    with pytest.raises(UsageError, match=r"accuracy.*class indices.*argmax"):
        fit(model, one_hot, epochs=1, optimizer=_sgd(model), metrics=["accuracy"], callbacks=[Progress(False)])
    fit(model, one_hot, epochs=1, optimizer=_sgd(model), callbacks=[Progress(False)])  # soft targets, no accuracy


def test_nan_inputs_are_blamed_not_the_learning_rate():
    x, y = loaders()[0].tensors
    x = x.clone()
    x[::7, 0] = math.nan
    model = classifier()
    history = fit(model, TensorLoader(x, y, batch_size=32, shuffle=True), epochs=3, optimizer=_sgd(model, 0.01),
                  callbacks=[Progress(False)])
    assert history.diverged
    assert "NaN" in history.stop_reason and "train" in history.stop_reason
    assert "Lower the learning rate" not in history.stop_reason
