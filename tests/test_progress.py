"""Every run shows its epochs, and a run that stops early says why once, with the real epoch count.

* In a notebook or a terminal the epochs are a tqdm bar; a bar closed early ends at the epochs that ran,
  with the reason as its description, and (in a notebook) is not left red for a normal early stop.
* Where a bar cannot redraw (a log file, a pipe, CI, `capsys` here) each epoch is one line.
* The `labkit` command shows the epochs of every lab, also of fits whose caller asked for no bars.
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest
import torch
from torch import nn

from labkit import callbacks, cli, config, distributed
from labkit.callbacks import EarlyStopping, Progress
from labkit.engine import fit
from labkit.lab import lab_names

REASON = "early stopping at epoch 3 of 8: no val_accuracy improvement for 2 epochs"


def _early_stopping_fit(progress=None, epochs=8):
    """A fit that cannot improve (lr 1e-5) and so stops early at epoch 3 with patience 2."""
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = (x[:, 0] > 0).long()
    train = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    val = [(torch.randn(16, 3), torch.randint(0, 2, (16,)))]
    model = nn.Linear(3, 2)
    return fit(model, train, epochs=epochs, optimizer=torch.optim.SGD(model.parameters(), lr=1e-5),
               eval_data=val, metrics=("accuracy",), monitor="val_accuracy",
               callbacks=[EarlyStopping(patience=2), Progress(progress)], device="cpu")


def test_lines_mode_prints_each_epoch_and_the_stop_reason_once(monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_PROGRESS", "1")
    history = _early_stopping_fit()
    out = capsys.readouterr().out
    assert len(history) == 3 and history.stop_reason.startswith(REASON)
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == [
        "epoch 1/8", "epoch 2/8", "epoch 3/8"]
    assert "val accuracy" in lines[0] and "train loss" in lines[0]
    assert out.count(REASON) == 1, out


def test_a_bar_closed_early_shows_the_epochs_that_ran_and_the_reason(monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_PROGRESS", "1")
    monkeypatch.setattr(callbacks, "_interactive", lambda: True)  # as in a terminal
    closed = []
    close = Progress.on_fit_end
    monkeypatch.setattr(Progress, "on_fit_end", lambda self, state: (closed.append(self), close(self, state)))
    _early_stopping_fit()
    captured = capsys.readouterr()
    bar = closed[0].bar
    assert bar.n == 3 and bar.total == 8  # 3 of 8 epochs ran (not the 2 a bar drawn last would show)
    final = captured.err.replace("\r", "\n").strip().splitlines()[-1]
    assert final.startswith(REASON) and "3/8" in final, final
    assert REASON not in captured.out  # the bar says it: no second message


def test_quiet_mode_still_says_why_a_run_stopped_once(capsys):
    _early_stopping_fit(progress=False)
    out = capsys.readouterr().out
    assert out.count(REASON) == 1 and "epoch 1/8" not in out


def test_other_ranks_print_nothing_not_even_the_stop_reason(monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_PROGRESS", "1")
    monkeypatch.setattr(distributed, "is_main_process", lambda: False)  # as on rank 1 under DDP
    history = _early_stopping_fit()
    assert history.stop_reason.startswith(REASON)
    assert capsys.readouterr().out == ""


def test_long_fits_print_at_most_about_twenty_epoch_lines(monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_PROGRESS", "1")
    model = nn.Linear(1, 1)
    data = [(torch.randn(4, 1), torch.randn(4, 1))]
    fit(model, data, epochs=95, optimizer=torch.optim.SGD(model.parameters(), lr=1e-3), loss_fn=nn.MSELoss(),
        device="cpu")
    epochs = [int(line.split("/")[0].split()[1]) for line in capsys.readouterr().out.splitlines()
              if line.startswith("epoch ")]
    assert epochs[0] == 1 and epochs[-1] == 95 and len(epochs) <= callbacks.MAX_EPOCH_LINES + 2
    assert epochs == sorted(set(epochs))


def test_the_labkit_command_shows_epochs_of_fits_that_asked_for_no_bars(monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_PROGRESS", "1")
    assert callbacks.progress_mode(False) == "quiet"
    with config.running_command():
        assert callbacks.progress_mode(False) == "lines"
        monkeypatch.setenv("LABKIT_PROGRESS", "0")  # the user's off switch still wins
        assert callbacks.progress_mode(False) == "quiet" and callbacks.progress_mode(None) == "quiet"
    assert not config.terminal_command()


@pytest.mark.slow
@pytest.mark.parametrize("lab", lab_names())
def test_labkit_smoke_prints_a_line_per_epoch_for_every_lab(lab, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_PROGRESS", "1")
    assert cli.main(["smoke", lab, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ") and "/" in line.split(":")[0]]
    assert any(line.startswith("epoch 1/") for line in epoch_lines), out[-3000:]
    assert len(epoch_lines) >= 2, epoch_lines  # every lab's smoke trains for more than one epoch


NOTEBOOK_CELL = textwrap.dedent("""\
    import os, sys
    sys.path.insert(0, {tests!r})
    os.environ["LABKIT_PROGRESS"] = "1"
    from test_progress import _early_stopping_fit
    history = _early_stopping_fit()
    """)


def test_in_a_notebook_the_bar_closed_early_is_not_red_and_holds_the_reason(tmp_path):
    """A real kernel (nbclient) with the tqdm widget: its saved state is what the notebook showed."""
    import nbformat
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    from tests.test_widget_fallback import _CurrentEnvKernelSpecs

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        NOTEBOOK_CELL.format(tests=os.path.dirname(__file__)))])
    km = KernelManager(kernel_name="python3", kernel_spec_manager=_CurrentEnvKernelSpecs())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    NotebookClient(nb, km=km, timeout=120, allow_errors=False, store_widget_state=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    states = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in states.values() if m["model_name"] in ("FloatProgressModel", "IntProgressModel")]
    epochs_bar = next(b for b in bars if b["max"] == 8)
    assert epochs_bar["value"] == 3 and epochs_bar["bar_style"] == "success", epochs_bar
    labels = [m["state"].get("value", "") for m in states.values() if m["model_name"] == "HTMLModel"]
    assert any(REASON.replace(" ", "\u2007") in html or REASON in html for html in labels), labels
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.output_type == "stream")
    assert REASON not in printed  # said once, by the bar
    json.dumps(states)  # the saved state is plain JSON


def test_epoch_lines_name_a_held_out_split_by_what_it_is(monkeypatch, capsys):
    # Lab 02 on an image folder without a test split evaluates on a hold-out stored under the key "test"
    monkeypatch.setenv("LABKIT_PROGRESS", "1")
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    model = nn.Linear(3, 2)
    fit(model, [(x, y)], epochs=1, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        eval_data={"test": [(x, y)]}, metrics=("accuracy",), device="cpu",
        callbacks=[Progress(True, split_labels={"train": "a class-balanced 5,000 of train",
                                                "test": "hold-out (5,000 of train)"})])
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch 1/1"))
    assert "hold-out accuracy" in line and "hold-out loss" in line and "train loss" in line
    assert "test accuracy" not in line
