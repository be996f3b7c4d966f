"""Lab 01 as a student sees it: a real JupyterLab in a real (headless Debian chromium) browser.

Opens the lab, runs all cells from the Run menu, waits for the training panel and its plot,
moves the epochs slider, clicks Train and checks that the plot is redrawn, and that the plain
copies under the panel (a PNG and a result line, what a reopened notebook shows without its kernel)
are replaced, not added to. Screenshots go to runs/screenshots/. The whole test, server start included, must stay under 3 minutes.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.browser.jupyterlab import JupyterLab

NOTEBOOK = "labs/01_function_fitting.ipynb"
BUDGET_S = 180

#: JS: a short fingerprint (length + FNV-1a hash) of the bytes behind an <img>, to tell redraws apart.
IMAGE_FINGERPRINT = """async (img) => {
  const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
  let h = 0x811c9dc5;
  for (const b of bytes) { h ^= b; h = Math.imul(h, 0x01000193) >>> 0; }
  return `${bytes.length}:${h.toString(16)}`;
}"""

#: JS: true once the notebook's kernel is started and idle.
KERNEL_READY = """() => {
  const dialog = document.querySelector('.jp-Dialog');
  if (dialog && /Select Kernel/.test(dialog.textContent)) return 'select-kernel-dialog';
  const name = document.querySelector('.jp-NotebookPanel-toolbar .jp-KernelName');
  const idle = document.querySelector('.jp-Notebook-ExecutionIndicator[data-status="idle"]');
  return name !== null && idle !== null && !/No Kernel|Initializing|Starting/.test(name.textContent) && 'ready';
}"""

#: JS: true once Run All has finished: some cell ran, none is queued or running, the kernel is idle.
RUN_ALL_FINISHED = """() => {
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent);
  const idle = document.querySelector('.jp-Notebook-ExecutionIndicator[data-status="idle"]') !== null;
  return idle && prompts.some(t => /\\[\\d+\\]/.test(t)) && !prompts.some(t => t.includes('*'));
}"""


def _unexecuted_cells(page) -> list[int]:
    prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
    return [i for i, text in enumerate(prompts) if not re.search(r"\[\d+\]", text)]


@pytest.mark.timeout(BUDGET_S)
@pytest.mark.parametrize("lab_server", [NOTEBOOK], indirect=True)
def test_lab01_trains_from_the_widget_panel(lab_server: JupyterLab, page, screenshots: Path, record_property):
    start = time.monotonic()
    page.set_default_timeout(60_000)
    page.goto(lab_server.url(Path(NOTEBOOK).name))

    # The notebook is open and its kernel has started (no "Select Kernel" dialog: the lab names its kernel).
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    kernel = page.wait_for_function(KERNEL_READY, timeout=90_000, polling=250).json_value()
    assert kernel == "ready", f"{NOTEBOOK} opened with a Select Kernel dialog: its metadata names no kernelspec"

    # Run → Run All Cells, as a student would.
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells")).click()
    page.wait_for_function(RUN_ALL_FINISHED, timeout=120_000, polling=500)
    not_run = _unexecuted_cells(page)
    errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    assert not not_run, f"code cells {not_run} did not run (an earlier cell failed?):\n" + "\n".join(errors)[-3000:]

    # The training panel: epochs slider, learning-rate slider, Train button, and its plot.
    button = page.locator(".jupyter-widgets button", has_text="Train")
    epochs = page.locator(".widget-slider", has_text="epochs")
    lr = page.locator(".widget-slider", has_text="learning rate")
    plot = page.locator(".jp-OutputArea-output img.widget-image")
    for widget in (button, epochs, lr):
        widget.wait_for(state="visible")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0 && img.src.startsWith('blob:')",
                           arg=plot.element_handle())
    assert page.locator(".jp-OutputArea-output img").count() >= 1
    # The screenshot shows the panel's cell from its top: code, sliders, button, status and the plot.
    plot.evaluate("img => img.closest('.jp-Cell').scrollIntoView({block: 'start'})")
    page.screenshot(path=screenshots / "lab01-jupyterlab.png")
    shown = plot.bounding_box()
    assert shown["width"] <= plot.evaluate("img => img.naturalWidth") + 1, "the plot is stretched beyond its size"
    before_src, before_bytes = plot.get_attribute("src"), plot.evaluate(IMAGE_FINGERPRINT)

    # Under the panel, plain outputs: one PNG of the plot and one result line.
    cell = page.locator(".jp-CodeCell", has=plot)
    static_png = cell.locator('.jp-OutputArea-output[data-mime-type="image/png"] img')
    static_line = cell.locator('.jp-OutputArea-output[data-mime-type="text/plain"]', has_text="trained ")
    assert static_png.count() == 1 and static_line.count() == 1, "no plain copy of the plot and result"
    assert static_line.inner_text().startswith("trained "), static_line.inner_text()
    static_before = static_png.evaluate(IMAGE_FINGERPRINT)

    # Move the epochs slider one step with the keyboard: down (a quicker retrain), or up when at its minimum.
    readout = epochs.locator(".widget-readout")
    old_value = readout.inner_text().strip()
    handle = epochs.locator(".noUi-handle")
    at_min = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemin")
    handle.focus()
    page.keyboard.press("ArrowRight" if at_min else "ArrowLeft")
    page.wait_for_function("([el, old]) => el.textContent.trim() !== old", arg=[readout.element_handle(), old_value])
    new_value = readout.inner_text().strip()

    # Train with it: the status names the new epoch count and the plot is redrawn.
    button.click()
    status = page.locator(".jupyter-widgets.widget-html", has_text=f"trained {int(float(new_value))} epochs")
    status.wait_for(state="visible", timeout=90_000)
    page.wait_for_function("([img, old]) => img.src !== old && img.complete && img.naturalWidth > 0",
                           arg=[plot.element_handle(), before_src])
    after_bytes = plot.evaluate(IMAGE_FINGERPRINT)
    # The click replaced the plain copies in place (routed to this cell by their display ids).
    retrained = cell.locator('.jp-OutputArea-output[data-mime-type="text/plain"]',
                             has_text=f"trained {int(float(new_value))} epochs")
    retrained.wait_for(state="visible", timeout=30_000)
    assert static_png.count() == 1 and static_line.count() == 1, "Train added plain copies instead of replacing"
    assert static_png.evaluate(IMAGE_FINGERPRINT) != static_before, "the plain PNG was not replaced"
    page.screenshot(path=screenshots / "lab01-after-train.png")
    assert after_bytes != before_bytes, "the plot image did not change after Train"

    elapsed = time.monotonic() - start
    record_property("browser_wall_s", round(elapsed, 1))
    print(f"\nbrowser test: epochs {old_value} -> {new_value}, {elapsed:.1f} s in the browser; "
          f"screenshots in {screenshots}")
    assert elapsed < BUDGET_S
