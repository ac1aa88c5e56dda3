"""Every explorer in a real browser: JupyterLab opens its notebook, runs all cells, and a user
moves a slider with the keyboard; the ipympl canvas must repaint and the readout must follow.

Run only these: ``python -m pytest tests/e2e -q``; skip them: ``-m "not e2e"``.
"""
from __future__ import annotations

import importlib
import json
import re

import pytest

from lrp_widgets.widgets import _EXPLORERS

from .lab import NOTEBOOKS, drawn_pixels, image_difference, normalize

pytestmark = pytest.mark.e2e

#: the key a user presses on the slider's handle, where an arrow key is not the right one.
#: The notebook, tests/e2e/notebooks/<Explorer>.ipynb, names the slider.
KEYS = {
    # a step of epsilon at 1e-6 changes nothing visible; End takes it to 10, which absorbs relevance
    "RuleExplorer": "End",
}


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


@pytest.mark.parametrize("name", list(explorer_params()))
def test_explorer_in_jupyterlab(name, open_notebook):
    assert (NOTEBOOKS / f"{name}.ipynb").exists(), f"write tests/e2e/notebooks/{name}.ipynb (copy another explorer's)"
    notebook = open_notebook(f"{name}.ipynb")
    notebook.run_all()
    assert_no_error_shown(notebook, "after Run All")
    report_cell = len(notebook.prompts()) - 1
    initial = kernel_state(notebook.page.locator(".jp-CodeCell").nth(report_cell).locator(".jp-OutputArea").inner_text())
    assert initial["error"] is None

    before = notebook.wait_for_canvas()
    notebook.images["before"] = before
    # widgets render after their cell has finished: look again once the figure is up
    assert_no_error_shown(notebook, "once the figure was drawn")
    readout_before = notebook.text(".e2e-readout")
    assert readout_before, "the readout is empty"
    assert normalize(initial["readout"]) == readout_before

    label_before, label_after = notebook.move_slider(".e2e-slider", KEYS.get(name, "ArrowRight"))

    after = notebook.wait_for_change(notebook.canvas_png, before, description="the figure's canvas")
    # a repaint can arrive in pieces: wait until the canvas holds still, then compare
    after = notebook.wait_for_canvas()
    notebook.images["after"] = after
    changed = image_difference(before, after)
    assert changed > 200, f"moving the slider repainted only {changed} pixels of the canvas"
    assert drawn_pixels(after) > 2000

    readout_after = notebook.wait_for_change(lambda: notebook.text(".e2e-readout"), readout_before, description="the readout")
    final = kernel_state(notebook.rerun_cell(report_cell))
    assert final["value"] != initial["value"], f"the kernel's {final['slider']} stayed {initial['value']} (label {label_before} -> {label_after})"
    assert final["error"] is None, final["error"]
    assert same_number(label_after, final["value"]), f"the slider shows {label_after}, the kernel holds {final['value']}"
    # what the browser shows is what the kernel computed for the new value
    assert normalize(final["readout"]) == notebook.text(".e2e-readout") == readout_after
    assert_no_error_shown(notebook, "after moving the slider")
    assert notebook.page_errors == [], f"uncaught errors in the page: {notebook.page_errors}"
