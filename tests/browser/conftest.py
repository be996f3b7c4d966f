"""Fixtures for the real-browser tests: one JupyterLab server and one headless Debian chromium page.

The tests skip (with the reason) only when /usr/bin/chromium is not installed; `.ci/run`
installs it, so CI runs them. No browser is ever downloaded: Playwright drives the
system chromium through `executable_path`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.jupyterlab import REPO, JupyterLab

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = REPO / "runs" / "screenshots"


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    return CHROMIUM


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="module")
def labs_server(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """One JupyterLab for all the labs: it serves a temporary root holding a copy of every labs/*.ipynb.
    Its kernels show progress bars (`LABKIT_PROGRESS=1`), as a student's do."""
    base = tmp_path_factory.mktemp("browser")
    root = base / "root"
    root.mkdir()
    for notebook in sorted((REPO / "labs").glob("[0-9][0-9]_*.ipynb")):
        shutil.copy(notebook, root / notebook.name)
    server = JupyterLab(root, base / "jupyter", extra_env={"LABKIT_PROGRESS": "1"})
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser_page(chromium_path: Path, labs_server: JupyterLab):
    """One headless chromium page (1400x1000) for the module; the browser is closed afterwards whatever happens."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_path), headless=True,
                                             args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.on("dialog", lambda dialog: dialog.accept())  # "leave the page?" when a notebook is dirty
            yield page
        finally:
            browser.close()


@pytest.fixture
def page(browser_page, request: pytest.FixtureRequest):
    """The module's page; a screenshot of what it showed when a test failed (runs/screenshots/failed-*.png)."""
    yield browser_page
    if getattr(request.node, "failed", False):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = request.node.name.replace("[", "-").replace("]", "").replace("/", "_")
        browser_page.screenshot(path=SCREENSHOTS / f"failed-{name}.png")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Mark the test item failed so the `page` fixture can take a screenshot of the failure."""
    report = yield
    if report.when == "call" and report.failed:
        item.failed = True
    return report
