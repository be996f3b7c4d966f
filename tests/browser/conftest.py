"""Fixtures for the real-browser tests: a JupyterLab server and a headless Debian chromium page.

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


@pytest.fixture
def lab_server(chromium_path: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[JupyterLab]:
    """JupyterLab serving a temporary root that holds a copy of one notebook (indirect parameter, repo-relative)."""
    notebook = REPO / request.param
    if not notebook.exists():
        pytest.fail(f"{request.param} is missing from the checkout")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(notebook, root / notebook.name)
    server = JupyterLab(root, tmp_path / "jupyter")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def page(chromium_path: Path, lab_server: JupyterLab, request: pytest.FixtureRequest):
    """A fresh headless chromium page (1400x1000); the browser is closed afterwards whatever happens."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_path), headless=True,
                                             args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            yield page
            if getattr(request.node, "failed", False):  # what the browser showed when it failed
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=SCREENSHOTS / f"failed-{request.node.name.split('[')[0]}.png")
        finally:
            browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Mark the test item failed so the `page` fixture can take a screenshot of the failure."""
    report = yield
    if report.when == "call" and report.failed:
        item.failed = True
    return report
