"""Every lab as a student sees it: a real JupyterLab in a real (headless Debian chromium) browser.

One JupyterLab server serves copies of all five notebooks; its kernels show progress bars, as a
student's do. For each lab: open it, wait for its kernel, Run → Run All Cells, wait until every cell
has run and the kernel is idle; no cell may show a traceback; the training panel (sliders, Train) is
there with its plot shown once (the plain PNG under the panel; the live widget plot is hidden between
runs). In Lab 01 and Lab 03 the epochs slider is moved and Train clicked once: the result line and the
plot are replaced in place. In Lab 03 the early-stopping run's progress bar ends at the epochs that
ran, not red, with the reason, and the reason is printed once. Lab 01 is then saved, its kernel shut
down, and the notebook reopened: the plain PNG and the result line are shown where the widgets can no
longer be ("Error displaying widget: model not found").

Screenshots go to runs/screenshots/ (labNN-jupyterlab.png per lab, lab01-after-train.png,
lab03-after-train.png, lab01-reopened.png; failed-*.png when a step fails).

Wall time, server start included: 6.0 min (360 s) measured on the shared 2-core machine at load average
9-11 (Run All per lab 21, 42, 96, 60, 33 s for Labs 01-05; the tests 36-119 s each), over the CI target
of 3 minutes there; most of it is the notebooks' own smoke-size training. Nothing here asserts a wall
time: every wait has a generous timeout, so a busy machine is slower, not failing.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.browser.jupyterlab import REPO, JupyterLab

LABS = sorted(path.name for path in (REPO / "labs").glob("[0-9][0-9]_*.ipynb"))
TRAIN_CLICKED = ("01", "03")
#: generous per-lab limits: a busy 2-core machine is slow, and labs change on other branches
RUN_ALL_TIMEOUT_MS = 480_000
STEP_TIMEOUT_MS = 120_000
#: what each lab's Run All took here, for the report (not asserted)
WALL_S: dict[str, float] = {}

#: JS: a short fingerprint (length + FNV-1a hash) of the bytes behind an <img>, to tell redraws apart.
IMAGE_FINGERPRINT = """async (img) => {
  const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
  let h = 0x811c9dc5;
  for (const b of bytes) { h ^= b; h = Math.imul(h, 0x01000193) >>> 0; }
  return `${bytes.length}:${h.toString(16)}`;
}"""

#: JS: 'ready' once the notebook's kernel is started and idle.
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

#: JS: the progress bars' labels and styles: [[text, classes of the bar], ...]
PROGRESS_BARS = """() => [...document.querySelectorAll('.jp-OutputArea-output .widget-hprogress')].map(bar => {
  const box = bar.closest('.widget-hbox') || bar.parentElement;
  return [box.textContent.replace(/\\u2007/g, ' '), bar.querySelector('.progress-bar').className];
})"""


def _number(name: str) -> str:
    return name[:2]


def _open(page, server: JupyterLab, name: str) -> None:
    """Open `name` in a fresh JupyterLab page (no restored tabs) and wait for its kernel."""
    page.goto(server.url(name) + "&reset")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=STEP_TIMEOUT_MS)
    kernel = page.wait_for_function(KERNEL_READY, timeout=STEP_TIMEOUT_MS, polling=250).json_value()
    assert kernel == "ready", f"{name} opened with a Select Kernel dialog: its metadata names no kernelspec"


def _save_and_leave(page, server: JupyterLab, name: str) -> dict:
    """Save the notebook (Ctrl+S), wait until the file on disk has outputs, shut its kernel down; the saved JSON."""
    path = server.root / name
    before = path.stat().st_mtime_ns
    page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
    while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
        time.sleep(0.25)
    assert path.stat().st_mtime_ns != before, f"{name} was not saved"
    while True:  # the server may still be writing the file when its time stamp changes: read it once complete
        try:
            saved = json.loads(path.read_text())
            break
        except json.JSONDecodeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)
    for kernel in server._api("GET", "/api/kernels") or []:
        server._api("DELETE", f"/api/kernels/{kernel['id']}")
    return saved


def _panel_cell(page):
    return page.locator(".jp-CodeCell").filter(has=page.locator("button.widget-button", has_text="Train"))


#: the cell's own outputs (not those inside a widget's Output area)
TOP_LEVEL = ".jp-Cell-outputArea > .jp-OutputArea-child > "


def _static_copies(cell):
    """The panel's plain copies: its first own PNG output (the cell's later plots come after it) and its
    result line."""
    png = cell.locator(TOP_LEVEL + '.jp-OutputArea-output[data-mime-type="image/png"] img').first
    line = cell.locator(TOP_LEVEL + '.jp-OutputArea-output[data-mime-type="text/plain"]',
                        has_text=re.compile(r"^(trained|not )"))
    return png, line


def _plot_shown_once(cell) -> bool:
    """The panel's plot is the plain PNG; the live widget plot inside the panel is hidden between runs."""
    live = cell.locator("img.widget-image")
    return all(live.nth(i).is_hidden() for i in range(live.count()))


def _move_epochs_and_train(page, cell) -> str:
    """Move the epochs slider one step (down, or up at its minimum), click Train; the new epoch count."""
    epochs = cell.locator(".widget-slider", has_text="epochs")
    readout = epochs.locator(".widget-readout")
    old_value = readout.inner_text().strip()
    handle = epochs.locator(".noUi-handle")
    at_min = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemin")
    handle.focus()
    page.keyboard.press("ArrowRight" if at_min else "ArrowLeft")
    page.wait_for_function("([el, old]) => el.textContent.trim() !== old", arg=[readout.element_handle(), old_value])
    new_value = str(int(float(readout.inner_text().strip())))
    cell.locator("button.widget-button", has_text="Train").click()
    return new_value


def _check_early_stopping_bar(page, lab_cells_text: str) -> None:
    """Lab 03's early-stopping run: its bar ends at the epochs that ran with the reason, not red; said once."""
    printed = re.findall(r"early stopping at epoch \d+ of \d+", lab_cells_text)
    if not printed:
        pytest.fail("Lab 03 printed no early-stopping reason: its early-stopping run ran all its epochs?")
    assert len(printed) == 1, f"the stop reason is printed {len(printed)} times"
    bars = page.evaluate(PROGRESS_BARS)
    stopped = [(text, classes) for text, classes in bars if "early stopping at epoch" in text]
    assert stopped, f"no progress bar says why it stopped: {[t for t, _ in bars]}"
    text, classes = stopped[0]
    ran, total = map(int, re.search(r"early stopping at epoch (\d+) of (\d+)", text).groups())
    assert f"{ran}/{total}" in text, f"the bar does not show the {ran} epochs that ran: {text}"
    assert "progress-bar-danger" not in classes and "progress-bar-success" in classes, (text, classes)
    assert not any("progress-bar-danger" in c for _, c in bars), "a progress bar is left red"


@pytest.mark.timeout((RUN_ALL_TIMEOUT_MS + 6 * STEP_TIMEOUT_MS) // 1000)
@pytest.mark.parametrize("name", LABS)
def test_lab_runs_all_cells_in_jupyterlab(name: str, labs_server: JupyterLab, page, screenshots: Path):
    number = _number(name)
    _open(page, labs_server, name)
    start = time.monotonic()

    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells")).click()
    page.wait_for_function(RUN_ALL_FINISHED, timeout=RUN_ALL_TIMEOUT_MS, polling=1000)
    WALL_S[number] = round(time.monotonic() - start, 1)

    # Every code cell ran; none shows a traceback.
    prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
    not_run = [i for i, text in enumerate(prompts) if not re.search(r"\[\d+\]", text)]
    stderr = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    tracebacks = [text for text in stderr
                  if "Traceback" in text or re.search(r"^\w+(Error|Exception)\b", text, re.MULTILINE)]
    assert not not_run and not tracebacks, (f"{name}: code cells {not_run} did not run; errors:\n"
                                            + "\n".join(tracebacks or stderr)[-3000:])

    # The training panel, and its plot shown once: the plain PNG under it (the live widget plot hidden).
    cell = _panel_cell(page)
    assert cell.count() == 1, f"{name}: expected one training panel, found {cell.count()}"
    for label in ("epochs", "learning rate"):
        cell.locator(".widget-slider", has_text=label).wait_for(state="visible")
    png, line = _static_copies(cell)
    png.wait_for(state="visible")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=png.element_handle())
    assert line.count() == 1 and line.inner_text().startswith("trained "), line.all_inner_texts()
    assert _plot_shown_once(cell), f"{name}: the panel's plot is shown twice (live widget and plain PNG)"
    png.evaluate("img => img.closest('.jp-Cell').scrollIntoView({block: 'start'})")
    page.screenshot(path=screenshots / f"lab{number}-jupyterlab.png")

    if number == "03":
        outputs = "\n".join(page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]')
                            .all_inner_texts())
        _check_early_stopping_bar(page, outputs)

    if number in TRAIN_CLICKED:
        before = png.evaluate(IMAGE_FINGERPRINT)
        epochs = _move_epochs_and_train(page, cell)
        cell.locator('.jp-OutputArea-output[data-mime-type="text/plain"]',
                     has_text=f"trained {epochs} epochs").wait_for(state="visible", timeout=STEP_TIMEOUT_MS)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=png.element_handle())
        assert line.count() == 1, "Train added plain copies instead of replacing them"
        assert png.evaluate(IMAGE_FINGERPRINT) != before, "the plot was not redrawn"
        assert _plot_shown_once(cell), "after Train the panel's plot is shown twice"
        page.screenshot(path=screenshots / f"lab{number}-after-train.png")

    saved = _save_and_leave(page, labs_server, name)
    panel_outputs = [o for c in saved["cells"] if c["cell_type"] == "code" and "TrainingPanel(" in "".join(c["source"])
                     for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in panel_outputs), f"{name}: the saved panel cell has no PNG"
    print(f"\n{name}: Run All {WALL_S[number]} s")


@pytest.mark.timeout(3 * STEP_TIMEOUT_MS // 1000)
def test_lab01_reopened_without_its_kernel_shows_the_plain_plot_and_result(labs_server: JupyterLab, page,
                                                                           screenshots: Path):
    name = LABS[0]
    if "01" not in WALL_S:
        pytest.skip("Lab 01 did not run in this session (its test failed or was deselected)")
    _open(page, labs_server, name)  # the saved notebook, in a new kernel that never saw its widgets
    cell = page.locator(".jp-CodeCell").filter(has_text="TrainingPanel(")
    png, line = _static_copies(cell)
    png.wait_for(state="visible", timeout=STEP_TIMEOUT_MS)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=png.element_handle())
    assert line.count() == 1 and line.inner_text().startswith("trained "), line.all_inner_texts()
    png.evaluate("img => img.closest('.jp-Cell').scrollIntoView({block: 'start'})")
    page.screenshot(path=screenshots / "lab01-reopened.png")
    missing = page.get_by_text("model not found").count()
    print(f"\nLab 01 reopened: the plain plot and result line shown; {missing} widget placeholder(s) say "
          f"'model not found'; Run All per lab: {WALL_S}")
