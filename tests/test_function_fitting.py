"""Lab 01: the negative-target test, the sweeps' figures in their degenerate cases, the reference run."""

from __future__ import annotations

import json

import pytest
import torch

from labkit.errors import LabkitError
from labkit.labs import function_fitting as ff


def test_course_function_range_on_the_interval():
    x = torch.linspace(-4, 4, 100_001)
    y = ff.course_function(x)
    # the lab states "about −6.1 to 12.8": half of the 200 training targets are below zero
    assert y.min().item() == pytest.approx(-6.10, abs=0.01) and y.max().item() == pytest.approx(12.80, abs=0.01)
    _, targets = ff.sample(ff.course_function)
    assert 0.4 < (targets < 0).float().mean().item() < 0.6


def test_the_mlp_fits_targets_below_zero():
    """The course belief 'it cannot fit negative values', tested: a linear output fits f − 20 and −f."""
    results = ff.negative_target_test(epochs=400, lr=0.005)
    assert list(results) == ["f", "f-20", "-f"]
    shifted = results["f-20"]
    assert not shifted.history.diverged and (shifted.target < 0).all()
    assert (shifted.prediction < 0).all(), "every prediction of f − 20 should be below zero"
    assert shifted.mse < 1.0 and results["-f"].mse < 2.0
    table = str(ff.negative_table(results))
    assert "f-20" in table and "100%" in table and "prediction range" in table


def test_negative_target_test_refuses_zero_epochs():
    with pytest.raises(LabkitError, match="at least 1 epoch"):
        ff.negative_target_test(epochs=0)


def _losses(result):
    return result.history["train_loss"]


def test_epochs_sweep_figure_draws_retraced_curves_once():
    by_epochs = ff.sweep((5, 10, 20), "epochs", lr=0.005)
    assert ff.retraces(by_epochs), "same seed and lr: a shorter run is the start of a longer one"
    fig = ff.plot_fits(by_epochs, "epochs", note=ff.size_note("smoke"))
    right = fig.axes[1]
    # one grey curve for the shared loss, one end marker per run: no four identical lines on top of each other
    lines = [line for line in right.get_lines() if len(line.get_xdata()) > 1]
    markers = [line for line in right.get_lines() if len(line.get_xdata()) == 1]
    assert len(lines) == 1 and len(markers) == 3
    assert "smoke size" in fig._suptitle.get_text()


def test_lr_sweep_keeps_one_colour_per_lr_across_panels():
    by_lr = ff.sweep((1.0, 0.01, 0.001), "lr", epochs=30)
    assert by_lr[1.0].history.diverged and not ff.retraces(by_lr)
    fig = ff.plot_fits(by_lr, "lr")
    left, right = fig.axes[:2]
    colour = {line.get_label(): line.get_color() for line in left.get_lines()}
    for line in right.get_lines():
        if line.get_label() in colour:
            assert line.get_color() == colour[line.get_label()]
    assert any("diverged" in line.get_label() for line in right.get_lines())


def test_plot_fits_refuses_no_results():
    with pytest.raises(LabkitError, match="at least one result"):
        ff.plot_fits({}, "lr")


def test_reference_runs_the_sweeps_and_the_negative_test(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_RESULTS", str(tmp_path))
    from labkit import results

    path = results.reproduce("function-fitting", "smoke")
    ref = json.loads(path.read_text())
    assert set(ref["runs"]) == {"epochs", "lr", "negative"}
    assert ref["runs"]["lr"]["mse_1"] == "diverged"
    assert set(ref["runs"]["negative"]) == {"mse_f", "mse_f-20", "mse_-f"}
    folder = tmp_path / "function-fitting" / "smoke"
    assert (folder / "epochs_sweep.png").is_file() and (folder / "lr_sweep.png").is_file()
    assert "f-20" in (folder / "tables.md").read_text()
