"""Binder runs what CI tests (issue 16, item 8): one torch version and one Python everywhere, and
the declared lower bound is the tested version. tools/check_binder.sh (run by .ci/run) builds the
Binder environment and executes notebooks in it."""
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def ci_torch() -> Version:
    match = re.search(r"pip install --quiet torch==([\d.]+)", (ROOT / ".ci/run").read_text())
    assert match, ".ci/run installs a pinned torch"
    return Version(match.group(1))


def test_binder_pins_the_torch_ci_tests():
    lines = [line.strip() for line in (ROOT / "binder/requirements.txt").read_text().splitlines()]
    pins = [Requirement(line) for line in lines if line.startswith("torch")]
    assert len(pins) == 1
    (specifier,) = pins[0].specifier
    assert specifier.operator == "==" and Version(specifier.version).public == str(ci_torch())


def test_the_declared_lower_bound_is_the_tested_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (torch,) = [Requirement(r) for r in project["dependencies"] if r.startswith("torch")]
    lower = [Version(s.version) for s in torch.specifier if s.operator == ">="]
    assert lower and lower[0] == Version(f"{ci_torch().major}.{ci_torch().minor}")
    assert ci_torch() in torch.specifier


def test_binder_runs_the_python_ci_tests():
    runtime = (ROOT / "binder/runtime.txt").read_text().strip()
    assert runtime == f"python-{sys.version_info.major}.{sys.version_info.minor}"


def test_ci_runs_the_binder_check_before_the_tests():
    script = (ROOT / ".ci/run").read_text()
    assert "bash tools/check_binder.sh" in script
    assert script.index("bash tools/check_binder.sh") < script.index("python -m pytest")
    check = (ROOT / "tools/check_binder.sh").read_text()
    assert "binder/postBuild" in check and "notebooks/01_lrp_basics.ipynb" in check and "notebooks/dashboard.ipynb" in check
