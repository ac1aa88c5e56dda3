"""Every explorer in a real browser: JupyterLab opens its notebook and runs it; a user moves each
slider with the keyboard and the panel that shows what the slider changes must repaint; a drag
(several presses in a row) must end on the state of its last value, in the kernel and on screen.

Run only these: ``python -m pytest tests/e2e -q``; skip them: ``-m "not e2e"``.
"""
from __future__ import annotations

import importlib
import json
import re
import time

import pytest

from lrp_widgets.widgets import _EXPLORERS

from .lab import NOTEBOOKS, drawn_pixels, image_difference, normalize, wait_until_still

pytestmark = pytest.mark.e2e

#: per explorer: slider -> (the key a user presses, the panel that must repaint). End where one
#: arrow step changes little (epsilon at 1e-6, L1 0 -> 1e-5, a leak rate step of 12%).
SLIDERS = {
    "RuleExplorer": {"epsilon": ("End", "bars"), "gamma": ("End", "heatmap"), "sample": ("ArrowRight", "input_panel")},
    "L1Explorer": {"l1": ("End", "mean_heatmap"), "sample": ("ArrowRight", "sample_heatmap")},
    "LeakRateExplorer": {"leak_rate": ("End", "decay"), "sample": ("ArrowRight", "input_panel")},
    "RemovalExplorer": {"fraction": ("ArrowRight", "perturbed_panel"), "sample": ("ArrowRight", "input_panel")},
    "PathExplorer": {"k": ("ArrowRight", "graph"), "sample": ("ArrowRight", "input_panel")},
    "AttentionExplorer": {"epsilon": ("End", "heatmap"), "sample": ("ArrowRight", "input_panel"),
                          "layer": ("ArrowLeft", "map_panel"), "head": ("ArrowRight", "map_panel")},
}
DRAG_PRESSES = 6


def missing_module(name: str) -> str | None:
    """Why ``name`` cannot be tested yet: its module does not exist. Any other import error is a
    failure the test should show, so it is not a reason to skip."""
    module = f"lrp_widgets.widgets.{_EXPLORERS[name]}"
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name == module:
            return f"{name} cannot be imported yet: {module} does not exist"
    except Exception:  # noqa: BLE001 - shown by the test itself, in the notebook
        return None
    return None


def explorer_params():
    for name in _EXPLORERS:
        reason = missing_module(name)
        yield pytest.param(name, id=name, marks=pytest.mark.skipif(reason is not None, reason=reason or ""))


def same_number(label: str, value: str) -> bool:
    """A slider's label and the kernel's value agree (to the label's rounding); labels that are
    not numbers (a selection's names) are not compared."""
    try:
        shown = float(label[:-1]) / 100 if label.endswith("%") else float(label)
        held = float(value)
    except ValueError:
        return True
    return abs(shown - held) <= 0.01 * max(abs(shown), abs(held)) + 0.005 * ("%" in label) + 1e-12


def assert_no_error_shown(notebook, when: str):
    errors = notebook.error_outputs()
    assert not errors, f"{when}, a cell shows an error:\n{errors[0]}"
    error = notebook.text(".e2e-error")
    assert error == "", f"{when}, the explorer shows an error in its own error area: {error}"


def kernel_state(output: str) -> dict:
    match = re.search(r"^E2E (\{.*\})$", output, re.M)
    assert match, f"the report cell printed no state: {output!r}"
    return json.loads(match.group(1))


def panel_png(notebook, panel: str) -> bytes:
    return notebook.page.locator(f".e2e-panel-{panel} img").first.screenshot()


def wait_for_panel(notebook, panel: str, timeout: float = 30) -> bytes:
    """The panel's picture once it shows a drawing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        png = panel_png(notebook, panel)
        if drawn_pixels(png) > 200:
            return png
        time.sleep(0.25)
    raise AssertionError(f"{notebook.notebook}: panel {panel} shows no drawing after {timeout:.0f} s")


@pytest.mark.parametrize("name", list(explorer_params()))
def test_explorer_in_jupyterlab(name, open_notebook):
    assert (NOTEBOOKS / f"{name}.ipynb").exists(), f"write tests/e2e/notebooks/{name}.ipynb (lab.explorer_notebook)"
    notebook = open_notebook(f"{name}.ipynb")
    notebook.run_all()
    assert_no_error_shown(notebook, "after Run All")
    report_cell = len(notebook.prompts()) - 1
    report = lambda: kernel_state(notebook.rerun_cell(report_cell))  # noqa: E731
    initial = kernel_state(notebook.page.locator(".jp-CodeCell").nth(report_cell).locator(".jp-OutputArea").inner_text())
    assert initial["error"] is None and initial["up_to_date"]
    page = notebook.page
    for panel in {panel for _, panel in SLIDERS[name].values()}:
        wait_for_panel(notebook, panel)
    wait_until_still(page)
    assert_no_error_shown(notebook, "once the panels were drawn")
    assert notebook.text(".e2e-readout"), "the readout is empty"
    assert normalize(initial["readout"]) == notebook.text(".e2e-readout")

    for slider, (key, panel) in SLIDERS[name].items():
        selector = f".e2e-slider-{slider}"
        before = panel_png(notebook, panel)
        notebook.images[f"{slider}-before"] = before
        label_before, label_after = notebook.move_slider(selector, key)
        after = notebook.wait_for_change(lambda: panel_png(notebook, panel), before, description=f"panel {panel} after moving {slider}")
        wait_until_still(page)
        after = panel_png(notebook, panel)
        notebook.images[f"{slider}-after"] = after
        changed = image_difference(before, after)
        assert changed > 100, f"moving {slider} ({label_before} -> {label_after}) repainted only {changed} pixels of panel {panel}"
        state = report()
        assert state["error"] is None and state["up_to_date"], state
        assert same_number(label_after, state["values"][slider]), f"{slider} shows {label_after}, the kernel holds {state['values'][slider]}"
        assert normalize(state["readout"]) == notebook.text(".e2e-readout")

    # a drag: presses in a row, without waiting; the explorer must end on the last value
    slider, (key, panel) = next(iter(SLIDERS[name].items()))
    selector = f".e2e-slider-{slider}"
    before_state = report()
    handle = page.locator(f"{selector} .noUi-handle").first
    handle.focus()
    direction = "ArrowLeft" if key == "End" else "ArrowRight"
    for _ in range(DRAG_PRESSES):
        handle.press(direction)
    label = notebook.text(f"{selector} .widget-readout")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the kernel catches up; then the pictures hold still
        wait_until_still(page)
        final = report()
        if final["up_to_date"] and same_number(label, final["values"][slider]):
            break
    assert final["error"] is None and final["up_to_date"], f"after the drag the explorer shows a stale state: {final}"
    assert final["values"][slider] != before_state["values"][slider]
    assert same_number(label, final["values"][slider]), f"the slider shows {label}, the kernel holds {final['values'][slider]}"
    assert normalize(final["readout"]) == notebook.text(".e2e-readout")
    # every value arrived (none lost); intermediate ones may have been skipped while busy
    print(f"{name}: {DRAG_PRESSES} presses, {final['updates'] - before_state['updates']} updates")
    assert final["updates"] - before_state["updates"] <= DRAG_PRESSES
    assert_no_error_shown(notebook, "after moving the sliders")
    assert notebook.page_errors == [], f"uncaught errors in the page: {notebook.page_errors}"
