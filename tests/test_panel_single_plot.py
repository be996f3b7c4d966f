"""A live notebook shows the TrainingPanel's plot once: the live widget plot while a run trains, the
plain PNG under the panel (the copy a reopened notebook keeps) between runs, never both."""

from __future__ import annotations

import os

import nbformat
from jupyter_client import KernelManager
from nbclient import NotebookClient

from tests.helpers import fake_fit
from tests.test_widget_fallback import PANEL_CELL, WIDGET_VIEW, _CurrentEnvKernelSpecs, _pngs


def _train_and_watch(seen):
    def train(epochs, lr, plot):
        seen.append(plot.image.layout.display)  # what the live plot shows while the run trains
        return fake_fit(epochs, lr, plot)
    return train


def test_the_live_plot_is_visible_only_while_a_run_trains():
    from labkit.widgets import TrainingPanel

    seen: list = []
    panel = TrainingPanel(_train_and_watch(seen), epochs=3, lr=0.01, epoch_choices=[3, 6])
    assert panel.image.layout.display == "none"  # nothing trained yet: no empty picture
    panel.train()
    panel.train(epochs=6)
    assert seen == [None, None]  # visible during each run
    assert panel.image.layout.display == "none" and panel.plot.png.startswith(b"\x89PNG")


def test_a_failed_run_leaves_no_older_plot_and_hides_the_live_one():
    from labkit.widgets import TrainingPanel

    def broken(epochs, lr, plot):
        raise RuntimeError("no data")

    panel = TrainingPanel(broken, epochs=3, lr=0.01)
    try:
        panel.train()
    except RuntimeError:
        pass
    assert panel.image.layout.display == "none" and "failed: RuntimeError: no data" in panel.result_line


def _layout_display(states: dict, model_name: str) -> list:
    displays = []
    for model in states.values():
        if model["model_name"] == model_name:
            layout_id = model["state"]["layout"].removeprefix("IPY_MODEL_")
            displays.append(states[layout_id]["state"].get("display"))
    return displays


def test_in_a_kernel_the_panel_shows_one_plot_after_training(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src)
                                         for src in (PANEL_CELL, "panel.train(epochs=8)")])
    km = KernelManager(kernel_name="python3", kernel_spec_manager=_CurrentEnvKernelSpecs())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    NotebookClient(nb, km=km, timeout=120, allow_errors=False, store_widget_state=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    states = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    panel_cell = nb.cells[0]
    assert any(WIDGET_VIEW in o.get("data", {}) for o in panel_cell.outputs)
    assert len(_pngs(panel_cell.outputs)) == 1  # the plain copy ...
    assert _layout_display(states, "ImageModel") == ["none"]  # ... and the live plot hidden: one plot shown
