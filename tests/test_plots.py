"""Figures for students: whole-epoch axes."""

from __future__ import annotations


def test_a_one_epoch_history_gets_whole_epoch_ticks_only():
    """One epoch used to get ticks 0.945, 0.960, … 1.065 (MaxNLocator falls back to fractions)."""
    import matplotlib

    matplotlib.use("Agg")
    from labkit.history import History
    from labkit.plots import plot_history

    history = History()
    history.append(1, 0.1, 1.0, {"train_loss": 0.5, "val_loss": 0.6})
    fig = plot_history(history, ["train_loss", "val_loss"], title="one epoch")
    fig.canvas.draw()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        shown = [t for t in ax.get_xticks() if low <= t <= high]
        assert shown and all(float(t).is_integer() for t in shown), shown


def test_a_diverged_history_plots_each_series_against_its_own_epochs(tmp_path):
    """A run that evaluates each epoch and diverges at epoch 3 has 3 train values and 2 val values."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    from labkit.history import History
    from labkit.plots import plot_curves, plot_history

    history = History()
    for epoch in (1, 2):
        history.append(epoch, 0.1, 1.0, {"train_loss": 1.0 / epoch, "val_loss": 1.1 / epoch})
    history.append(3, 0.1, 1.0, {"train_loss": math.nan})
    history.diverged = True
    fig = plot_history(history, ["train_loss", "val_loss"], path=tmp_path / "curves.png")
    lines = {line.get_label(): list(line.get_xdata()) for line in fig.axes[0].get_lines()}
    assert lines == {"train": [1, 2, 3], "val": [1, 2]}
    assert (tmp_path / "curves.png").stat().st_size > 0
    fig = plot_curves({"a": history}, "val_loss")
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [1, 2]
    assert history.table().splitlines()[-1].startswith("| 3 | nan | – |")  # the epoch table too


def test_a_history_without_epochs_plots_a_note_not_a_key_error(tmp_path):
    """`--time-budget 0.001`: no epoch finished, so the History has no 'train_loss' at all."""
    import matplotlib

    matplotlib.use("Agg")
    from labkit.history import History
    from labkit.plots import plot_history

    fig = plot_history(History(), ["train_loss", "val_accuracy"], path=tmp_path / "curves.png", title="cut short")
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert any("no epoch" in text.get_text() for ax in fig.axes for text in ax.texts)
