"""The shared lab shape: config, registry, runner, optimizers/schedules and the generated CLI.

The toy lab is the worked example of docs/ARCHITECTURE.md, executed from the document itself,
so "add a sixth lab" stays true.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from labkit import lab as labmod
from labkit import optim, runner
from labkit.cli import main
from labkit.errors import UsageError
from labkit.lab import LabConfig
from tests.helpers import lr_trace

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def blobs():
    """Register the toy lab of docs/ARCHITECTURE.md by executing its code block."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    match = re.search(r"```python\n(# toy lab.*?)```", text, re.DOTALL)
    assert match, "docs/ARCHITECTURE.md lost its worked example"
    module = types.ModuleType("toy_blobs")
    sys.modules["toy_blobs"] = module  # dataclasses look their module up while building the class
    exec(compile(match.group(1), "ARCHITECTURE.md", "exec"), module.__dict__)  # noqa: S102 (our own doc)
    yield labmod.LABS["blobs"]
    labmod.LABS.pop("blobs", None)
    sys.modules.pop("toy_blobs", None)


def test_the_documented_lab_runs_from_the_cli(blobs, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "blobs", "--smoke", "--out", str(out)]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["lab"] == "blobs" and record["config"]["size"] == "smoke"
    assert record["summary"]["epochs_run"] == 3
    assert record["summary"]["test_accuracy"] > 0.6, "the blobs are easy: the run must learn them"
    assert (out / "curves.png").stat().st_size > 0
    assert {p.name for p in (out / "checkpoints").iterdir()} >= {"last.pt", "best.pt"}
    assert list((out / "tensorboard").iterdir()), "TensorBoard logs (with the graph) are written"


def test_help_lists_the_config_fields_with_help_and_size_defaults(blobs, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "blobs", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--size", "--smoke", "--resume", "--epochs", "--lr", "--classes", "--points", "--hidden"):
        assert flag in text
    assert "smoke 3" in text and "laptop 10" in text, "help shows each size's default where it differs"


def test_every_option_of_every_lab_has_help(blobs):
    from labkit.cli import lab_parser
    from labkit.lab import get_lab, lab_names

    for name in lab_names():
        parser = lab_parser(get_lab(name))
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help and action.help.strip(), f"labkit run {name} {action.option_strings[0]}"


def test_bad_options_are_usage_errors_that_name_the_option(blobs, capsys):
    assert_usage_error(["run", "blobs", "--smoke", "--batch-size", "0"], "--batch-size", capsys)
    assert_usage_error(["run", "blobs", "--smoke", "--lr", "-1"], "--lr", capsys)
    assert_usage_error(["run", "blobs", "--smoke", "--lr", "nan"], "--lr", capsys)
    assert_usage_error(["run", "blobs", "--smoke", "--epochs", "two"], "--epochs", capsys)
    assert_usage_error(["run", "blobs", "--smoke", "--size", "full"], "contradict", capsys)


def assert_usage_error(argv, needle, capsys):
    try:
        code = main(argv)
    except SystemExit as err:
        code = err.code
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert "labkit: error:" in err and needle in err, err


def test_unknown_lab_is_an_error_that_lists_the_labs(capsys):
    assert main(["smoke", "no-such-lab"]) == 2
    err = capsys.readouterr().err
    assert "unknown lab 'no-such-lab'" in err and "mnist" in err and "function-fitting" in err
    assert main(["run", "no-such-lab"]) == 2


def test_top_level_help_lists_the_labs_own_commands():
    """The labs are discovered (their commands come from their classes), so `labkit --help` imports them:
    it lists the shared commands and each lab's own (Lab 04's compare, Lab 05's generate)."""
    out = subprocess.run([sys.executable, "-m", "labkit", "--help"], capture_output=True, text=True, cwd=ROOT,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    for command in ("run", "smoke", "release", "reproduce", "export", "compare", "generate"):
        assert re.search(rf"^ +{command}\b", out.stdout, re.MULTILINE), (command, out.stdout)


def test_sizes_recipes_and_overrides(blobs):
    assert blobs.config("smoke").epochs == 3 and blobs.config("smoke").points == 120
    assert blobs.config("full").points == 6000
    cfg = blobs.config("laptop", lr=0.5)
    assert (cfg.size, cfg.recipe, cfg.lr, cfg.optimizer) == ("laptop", "default", 0.5, "adam")
    with pytest.raises(UsageError, match="no setting"):
        blobs.config("smoke", colour="red")
    with pytest.raises(UsageError, match="size"):
        blobs.config("huge")
    with pytest.raises(UsageError, match="recipe"):
        blobs.config("smoke", "no-such-recipe")
    with pytest.raises(UsageError, match="--classes"):
        blobs.config("smoke", classes=1)
    with pytest.raises(UsageError, match="--batch-size"):
        LabConfig(batch_size=0)
    with pytest.raises(UsageError, match="no field"):
        cfg.replace(colour="red")


def test_config_round_trips_through_a_checkpoint_dict(blobs):
    cfg = blobs.config("smoke", at_epochs=(1, 2))
    again = blobs.Config.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_runner_picks_best_by_validation_and_reads_test_once(blobs, tmp_path):
    reads = {"test": 0}
    cfg = blobs.config("smoke", out=str(tmp_path / "r"), epochs=4)
    data = blobs.load_data(cfg, _single_process())
    test_loader = data.eval["test"]

    class Counting:
        def __iter__(self):
            reads["test"] += 1
            return iter(test_loader)

        def __len__(self):
            return len(test_loader)

    data.eval["test"] = Counting()
    result = runner.run(blobs, cfg, data=data)
    assert reads["test"] == 1, "the test split is evaluated once, for the chosen checkpoint"
    assert "test_accuracy" not in result.history, "no per-epoch test curve: nothing is chosen on test"
    best_epoch, _ = result.history.best("val_accuracy")
    assert result.chosen_epoch == best_epoch
    assert set(result.final) == {"test"}


def test_load_run_rebuilds_the_model_from_the_checkpoint_alone(blobs, tmp_path):
    result = runner.run(blobs, blobs.config("smoke", out=str(tmp_path / "r")))
    again = runner.load_run(result.best_checkpoint)
    assert again.lab == "blobs" and again.config == result.config
    x = torch.randn(16, 2)
    result.model.eval()
    with torch.no_grad():
        assert torch.allclose(again.model(x), result.model(x))


def test_resume_trains_further_and_equals_an_uninterrupted_run(blobs, tmp_path):
    whole = runner.run(blobs, blobs.config("smoke", out=str(tmp_path / "whole"), epochs=4, tensorboard=False))
    part = runner.run(blobs, blobs.config("smoke", out=str(tmp_path / "part"), epochs=2, tensorboard=False))
    resumed = runner.run(blobs, blobs.config("smoke", out=str(tmp_path / "part"), epochs=4, tensorboard=False),
                         resume=part.last_checkpoint)
    assert resumed.history.epoch == [1, 2, 3, 4]
    assert resumed.history["train_loss"] == pytest.approx(whole.history["train_loss"], rel=1e-6)
    assert resumed.final["test"]["accuracy"] == pytest.approx(whole.final["test"]["accuracy"])


def test_resume_from_the_cli_uses_the_checkpoints_own_settings(blobs, tmp_path):
    out = tmp_path / "r"
    assert main(["run", "blobs", "--smoke", "--epochs", "2", "--hidden", "8", "--out", str(out)]) == 0
    assert main(["run", "blobs", "--resume", str(out / "checkpoints" / "last.pt"), "--epochs", "3"]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["summary"]["epochs_run"] == 3 and record["config"]["hidden"] == 8


def _single_process():
    from labkit.distributed import init_distributed

    return init_distributed("cpu")


# --- optimizers and schedules ------------------------------------------------------------------



def test_every_schedule_has_the_documented_shape():
    base = LabConfig(epochs=6, lr=1.0)
    flat, _ = lr_trace(base.replace(schedule="constant"))
    assert set(flat) == {1.0}
    step, interval = lr_trace(base.replace(schedule="step", step_size=2, gamma=0.5))
    assert interval == "epoch" and step[::4] == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    multi, _ = lr_trace(base.replace(schedule="multistep"))
    assert multi[::4] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1]), "default milestone: halfway"
    cos, _ = lr_trace(base.replace(schedule="cosine"))
    assert cos[0] == 1.0 and cos[-1] < 0.1 and cos == sorted(cos, reverse=True)
    warm, interval = lr_trace(base.replace(schedule="warmup", warmup_epochs=1.0))
    assert interval == "step" and warm[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0]) and warm[-1] == 1.0
    wc, _ = lr_trace(base.replace(schedule="warmup_cosine", warmup_steps=4, final_lr_fraction=0.1))
    assert wc[3] == pytest.approx(1.0) and wc[-1] == pytest.approx(0.1, abs=0.02)
    one, _ = lr_trace(base.replace(schedule="onecycle", pct_start=0.5, div_factor=10, cycle_momentum=False))
    assert one[0] == pytest.approx(0.1) and max(one) == pytest.approx(1.0, rel=0.05) and one[-1] < 0.01
    plateau, _ = lr_trace(base.replace(schedule="plateau", gamma=0.25, patience_lr=0))
    assert plateau[::4][:3] == pytest.approx([1.0, 1.0, 0.25]), "a constant monitored value never improves"


def test_optimizers_and_weight_decay_groups():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    for name in optim.OPTIMIZERS:
        opt = optim.make_optimizer(LabConfig(optimizer=name, lr=0.01, weight_decay=0.1), model)
        assert opt.param_groups[0]["weight_decay"] == 0.1
    groups = optim.make_optimizer(LabConfig(optimizer="adamw", weight_decay=0.1, decay_matrices_only=True),
                                  model).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[1].weight)}, "only the weight matrix decays: not biases, norms, embeddings"
    sgd = optim.make_optimizer(LabConfig(optimizer="sgd", momentum=0.9, nesterov=True), model)
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["momentum"] == 0.9


def test_choose_size(monkeypatch):
    monkeypatch.delenv("LABKIT_SIZE", raising=False)
    assert labmod.choose_size("laptop")[0] == "laptop"
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    assert labmod.choose_size(None)[0] == "smoke"
    monkeypatch.setenv("LABKIT_SIZE", "full")
    assert labmod.choose_size(None) == ("full", "LABKIT_SIZE=full")
    monkeypatch.setenv("LABKIT_SIZE", "huge")
    with pytest.raises(UsageError, match="LABKIT_SIZE"):
        labmod.choose_size(None)
    monkeypatch.delenv("LABKIT_SIZE")
    monkeypatch.setenv("LABKIT_SMOKE", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert labmod.choose_size(None)[0] == "laptop"


def _clocked_task(blobs, now: list[float]):
    """The blobs task on a fake clock `now`: a training batch costs 10 ms (the first three of each model 30 ms, a
    CPU's first steps build its kernels), an evaluation batch 3 ms. Returns the class and its per-model counts."""
    seen: dict[int, int] = {}

    class TimedTask(type(blobs.task(blobs.config("smoke")))):
        def __call__(self, model, batch):
            count = seen[id(model)] = seen.get(id(model), 0) + model.training
            now[0] += (0.030 if count <= 3 else 0.010) if model.training else 0.003
            return super().__call__(model, batch)

    return TimedTask, seen


def test_the_estimate_is_within_30_percent_of_the_run_on_a_fake_clock(blobs, tmp_path, capsys, monkeypatch):
    """The estimate against the run it predicts, on a fake clock (a wall clock would make the test depend on the
    machine's load): a training batch costs 10 ms and an evaluation batch 3 ms, except the first three training
    batches of each model, which cost 30 ms (a CPU's first steps build its kernels)."""
    now = [0.0]
    TimedTask, _ = _clocked_task(blobs, now)
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    cfg = blobs.config("smoke", out=str(tmp_path / "r"), epochs=3, points=6000, batch_size=8, tensorboard=False)
    data = blobs.load_data(cfg, _single_process())
    model = blobs.build_model(cfg, data.info)
    est = runner.estimate_run(blobs, cfg, data, model, TimedTask(), ("val",), torch.device("cpu"), steps=20)
    result = runner.run(blobs, cfg, data=data, model=model, task=TimedTask(), estimate=True)
    assert "estimated ~" in capsys.readouterr().out
    measured = result.history.total_seconds
    assert est.seconds_per_step == pytest.approx(0.010)  # the warm-up steps are not timed
    assert est.seconds_per_eval_batch == pytest.approx(0.003)
    logged = runner.ESTIMATES[-1]  # what `labkit reproduce` records: estimated against measured, per epoch
    assert logged["run"] == str(tmp_path / "r") and logged["measured_epoch_seconds"] == float(f"{measured / 3:.3g}")
    assert abs(logged["estimated_epoch_seconds"] - logged["measured_epoch_seconds"]) <= 0.3 * measured / 3
    assert abs(est.seconds - measured) <= 0.3 * measured, (est, measured)


def test_a_one_batch_evaluation_is_timed_not_counted_as_free(blobs, tmp_path, monkeypatch):
    """Val in one batch (Lab 03's comparison runs: 1,000 images in batches of 2,000): the estimate times that
    batch after a warm-up pass over it (it used to count it as 0 s, and the estimate came out 20-31 % short)."""
    now = [0.0]
    TimedTask, _ = _clocked_task(blobs, now)
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    cfg = blobs.config("smoke", out=str(tmp_path / "r"), epochs=10, points=400, batch_size=100, tensorboard=False)
    data = blobs.load_data(cfg, _single_process())
    assert len(data.train) == 4 and len(data.eval["val"]) == 1
    model = blobs.build_model(cfg, data.info)
    est = runner.estimate_run(blobs, cfg, data, model, TimedTask(), ("val",), torch.device("cpu"))
    assert est.seconds_per_eval_batch == pytest.approx(0.003) and est.eval_batches == 1
    result = runner.run(blobs, cfg, data=data, model=model, task=TimedTask(), estimate=True)
    measured = result.history.total_seconds
    assert abs(est.seconds - measured) <= 0.3 * measured, (est, measured)


def test_a_full_batch_run_is_timed_over_several_epochs(blobs, tmp_path, monkeypatch):
    """One step per epoch (Lab 01's full-batch training): the estimate warms up and times across epochs instead
    of dividing one step's time by nothing (it printed '~0 s' for 10,000 epochs)."""
    now = [0.0]
    TimedTask, seen = _clocked_task(blobs, now)
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    cfg = blobs.config("smoke", out=str(tmp_path / "r"), epochs=10_000, points=300, batch_size=4096,
                       tensorboard=False)
    data = blobs.load_data(cfg, _single_process())
    assert len(data.train) == 1
    est = runner.estimate_run(blobs, cfg, data, blobs.build_model(cfg, data.info), TimedTask(), (),
                              torch.device("cpu"))
    assert est.seconds_per_step == pytest.approx(0.010) and est.seconds == pytest.approx(100.0)
    assert sum(seen.values()) >= 3 + 50  # three warm-up steps, then half a second of timed ones


def test_a_long_run_does_not_start_by_itself_in_a_notebook(blobs, tmp_path, monkeypatch):
    monkeypatch.setattr("labkit.plots.in_notebook", lambda: True)
    monkeypatch.setattr(runner, "LONG_RUN_MINUTES", 1e-6)
    cfg = blobs.config("smoke", out=str(tmp_path / "r"))
    with pytest.raises(runner.LongRunError, match="does not start by itself"):
        runner.run(blobs, cfg, estimate=True)
    assert not (tmp_path / "r" / "checkpoints").exists()
    with runner.allow_long_runs():
        assert runner.run(blobs, cfg, estimate=True).history.epoch == [1, 2, 3]


def test_duration_text():
    assert runner.duration(45) == "45 s"
    assert runner.duration(26 * 60) == "26 min"
    assert runner.duration(4 * 3600 + 20 * 60) == "4 h 20 min"
