"""The browser tests skip where chromium or Playwright is missing, except in CI (issue 16, item 9):
with ``CI`` set, a missing browser fails the run instead of skipping every browser test."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import conftest as e2e

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value,expected", [("true", True), ("1", True), ("", False), ("false", False), ("0", False)])
def test_ci_is_recognised(monkeypatch, value, expected):
    monkeypatch.setenv("CI", value)
    assert e2e.in_ci() is expected


def test_unavailable_skips_outside_ci_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no browser"):
        e2e.unavailable("no browser")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no browser. CI is set"):
        e2e.unavailable("no browser")


def _run_browser_tests_without_chromium(ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = str(ROOT / "no-such-folder")  # no chromium on PATH
    if ci is not None:
        env["CI"] = ci
    command = [sys.executable, "-m", "pytest", "tests/e2e", "-q", "-x", "-p", "no:cacheprovider", "-o", "addopts="]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_without_chromium_the_browser_tests_fail_in_ci_and_skip_elsewhere():
    in_ci = _run_browser_tests_without_chromium("true")
    assert in_ci.returncode != 0 and "CI is set, so the browser tests must run" in in_ci.stdout, in_ci.stdout[-2000:]
    elsewhere = _run_browser_tests_without_chromium(None)
    assert elsewhere.returncode == 0 and "skipped" in elsewhere.stdout and "failed" not in elsewhere.stdout, elsewhere.stdout[-2000:]
