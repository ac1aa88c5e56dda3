"""Fixtures for the browser tests: one JupyterLab server and one headless Chromium for them all.

The tests skip only where Debian's ``chromium`` is not on PATH or Playwright cannot be imported
(``.ci/run`` installs both), and never where the ``CI`` environment variable is set: there a
missing browser fails the run instead of skipping every browser test quietly. Playwright's own
browser download is never used: Chromium is launched by its path.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"

# The notebooks here are opened in a browser by the tests; nbval (run on `tests` by the README's
# command) must not execute them a second time.
collect_ignore_glob = ["notebooks/*"]


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: drives JupyterLab in headless Chromium (tests/e2e)")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def in_ci() -> bool:
    """``CI`` is set (GitHub Actions, GitLab, ... set it to "true")."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str):
    """Skip the browser tests for ``reason``; in CI, fail instead: there they must run."""
    if in_ci():
        pytest.fail(f"{reason}. CI is set, so the browser tests must run, not skip", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        unavailable("chromium is not on PATH (Debian: apt-get install chromium; .ci/run does it)")
    return path


@pytest.fixture(scope="session")
def playwright_module():
    try:
        from playwright import sync_api
    except ImportError as error:
        unavailable(f"playwright is not importable ({error}); pip install -e '.[test]'")
    return sync_api


# package scope: the server and the browser go away when the last browser test is done, before
# the rest of the suite (nbval's notebooks) runs
@pytest.fixture(scope="package")
def lab_server(tmp_path_factory, chromium_path, playwright_module):
    from .lab import NOTEBOOKS, LabServer

    server = LabServer(tmp_path_factory.mktemp("jupyterlab"), sorted(NOTEBOOKS.glob("*.ipynb")))
    yield server
    server.stop()


@pytest.fixture(scope="package")
def playwright(playwright_module):
    """One Playwright for every browser test: a second sync_playwright() while one runs is refused
    ("Sync API inside the asyncio loop")."""
    instance = playwright_module.sync_playwright().start()
    yield instance
    instance.stop()


@pytest.fixture(scope="package")
def browser_context(tmp_path_factory, chromium_path, playwright, lab_server):
    from .lab import CHROMIUM_ARGS

    context = playwright.chromium.launch_persistent_context(
        str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh, empty profile
        executable_path=chromium_path,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 1000},
    )
    context.set_default_timeout(30_000)
    yield context
    context.close()


@pytest.fixture
def open_notebook(request, browser_context, lab_server):
    """``open_notebook(name)`` -> a :class:`NotebookPage` with ``name`` open and a kernel idle.

    On a failure the page, the canvas pictures and the browser's errors are saved to
    ``tests/e2e/screenshots/`` (git-ignored). The kernel is shut down after the test.
    """
    from .lab import NotebookPage

    opened = []

    def opener(name: str) -> NotebookPage:
        notebook = NotebookPage(browser_context.new_page(), lab_server, name)
        opened.append(notebook)
        notebook.open()
        return notebook

    yield opener
    report = getattr(request.node, "report_call", None) or getattr(request.node, "report_setup", None)
    for notebook in opened:
        if report is not None and report.failed:
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            saved = notebook.save_debug(SCREENSHOTS, name)
            print(f"\nsaved for debugging: {', '.join(str(p) for p in saved)}")
        notebook.page.close()
    lab_server.shutdown_kernels()
