"""A notebook saved after training shows the plot and the result without its kernel.

Widgets live only as long as their kernel: reopened later, a saved notebook shows "Error displaying
widget: model not found" where the TrainingPanel was. So each run also leaves plain outputs in the
cell, a PNG of the plot and a text line, replaced (not added to) by the next run. Here a small
notebook is run in a real kernel (nbclient), saved to disk and read back, as a reopened one is.
"""

from __future__ import annotations

import base64
import os
import textwrap
from pathlib import Path

import ipykernel.kernelspec
import nbformat
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

PANEL_CELL = textwrap.dedent("""\
    from labkit.widgets import TrainingPanel
    from tests.helpers import fake_fit as train  # what fit() tells its callbacks, without a model

    panel = TrainingPanel(train, epochs=4, lr=0.005, epoch_choices=[2, 4, 8], title="demo")
    panel.show()
    """)

LIVE_PLOT_CELL = textwrap.dedent("""\
    from labkit.plots import LivePlot

    live = LivePlot(every_seconds=0)
    for epochs in (3, 5):  # two fits with one plot: one picture and one line, of the last fit
        train(epochs, 0.1, live)
    """)


class _CurrentEnvKernelSpecs(KernelSpecManager):
    """Every kernel name means the Python running the tests."""

    def get_kernel_spec(self, kernel_name):
        return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                      **ipykernel.kernelspec.get_kernel_dict())


def _run_and_save(cells: list[str], path: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    km = KernelManager(kernel_name="python3", kernel_spec_manager=_CurrentEnvKernelSpecs())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    NotebookClient(nb, km=km, timeout=120, allow_errors=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
    nbformat.write(nb, path)
    return nbformat.read(path, as_version=4)  # what a reopened notebook holds


def _plain(outputs: list) -> list:
    """Displayed outputs a viewer without the kernel can show (not widget views; not a cell's value)."""
    return [o for o in outputs if o.output_type == "display_data" and WIDGET_VIEW not in o.data]


def _pngs(outputs: list) -> list[bytes]:
    return [base64.b64decode(o.data["image/png"]) for o in _plain(outputs) if "image/png" in o.get("data", {})]


def _texts(outputs: list) -> list[str]:
    return [o.data["text/plain"] for o in _plain(outputs)
            if set(o.get("data", {})) == {"text/plain"} and o.data["text/plain"]]


def test_saved_notebook_keeps_the_panel_plot_and_result_outside_the_widget(tmp_path):
    saved = _run_and_save([PANEL_CELL, "panel.train(epochs=8)", LIVE_PLOT_CELL], tmp_path / "lab.ipynb")
    panel_cell, retrain_cell, live_cell = saved.cells

    # The panel itself (a widget view), then its plain copies.
    assert any(WIDGET_VIEW in o.get("data", {}) for o in panel_cell.outputs)
    pngs, texts = _pngs(panel_cell.outputs), _texts(panel_cell.outputs)
    # Retrained in the next cell: still one picture and one line under the panel, of the last run.
    assert len(pngs) == 1 and pngs[0].startswith(b"\x89PNG")
    assert len(texts) == 1, texts
    assert texts[0].startswith("trained 8 epochs at lr 0.005 in ") and "final train_loss 0.125" in texts[0]
    assert not _pngs(retrain_cell.outputs) and not _texts(retrain_cell.outputs)

    # A LivePlot on its own is a plain PNG too, with the final metrics under it, one of each.
    assert len(_pngs(live_cell.outputs)) == 1
    assert _texts(live_cell.outputs) == ["trained 5 epochs: final train_loss 0.2"]


def test_panel_values_outside_the_sliders_are_refused_naming_the_range():
    """An ipywidgets slider clamps silently: epochs=0 trained 1 epoch, lr=5 trained at 1.0."""
    import pytest

    from labkit.widgets import TrainingPanel
    from tests.helpers import fake_fit

    with pytest.raises(ValueError, match=r"epochs=0 .*1 to 10"):
        TrainingPanel(fake_fit, epochs=0, lr=0.01)
    with pytest.raises(ValueError, match=r"epochs=0 .*at least 1"):
        TrainingPanel(fake_fit, epochs=0, lr=0.01, epoch_choices=[2, 4, 8])
    with pytest.raises(ValueError, match=r"lr=5 .*0\.0001 to 1"):
        TrainingPanel(fake_fit, epochs=2, lr=5)
    panel = TrainingPanel(fake_fit, epochs=3, lr=0.01, epoch_choices=[2, 4, 8])
    assert panel.epochs.value == 3 and panel.lr.value == pytest.approx(0.01)
