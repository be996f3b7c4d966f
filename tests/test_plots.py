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
