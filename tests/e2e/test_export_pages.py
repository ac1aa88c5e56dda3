"""Every explorer exported to one HTML page (issue 17), opened from file:// in headless Chromium
with every network request aborted and recorded: a user moves each control with the keyboard;
the pictures and the readout must change to what the page's data holds for the new value, and
nothing may be requested but the page itself.

Run only these: ``python -m pytest tests/e2e -q -k export``.
"""
from __future__ import annotations

import html
import itertools
import json
import re

import pytest

from lrp_widgets.widgets.registry import EXPLORERS

from .lab import CHROMIUM_ARGS

pytestmark = pytest.mark.e2e

#: small grids keep the test fast; every control keeps at least two values
SMALL = {"samples": 2, "max_states": 48}


def page_data(path) -> dict:
    text = path.read_text(encoding="utf-8")
    start = text.index('<script type="application/json" id="explorer-data">') + len('<script type="application/json" id="explorer-data">')
    return json.loads(text[start : text.index("</script>", start)].replace("<\\/", "</"))


def text_of(markup: str) -> str:
    """The text a browser shows for ``markup`` (its ``textContent``)."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def expected_view(data: dict, positions: list) -> list:
    """What each panel should show at the controls' ``positions``: [picture src, caption] or the
    readout, as text."""
    views = []
    for panel in data["panels"]:
        k = 0
        for d in panel["deps"]:
            k = k * len(data["controls"][d]["labels"]) + positions[d]
        if panel["kind"] == "picture":
            views.append(["data:image/png;base64," + data["pictures"][panel["pictures"][k]], text_of(data["texts"][panel["captions"][k]])])
        else:
            views.append(text_of(data["texts"][panel["texts"][k]]))
    return views


def moving_from(data: dict, control: int) -> list:
    """Positions of all controls from which one step of ``control`` changes a picture (the page's
    initial positions when they do; gamma needs the composite that uses it), preferring ones where
    the readout changes too."""
    counts = [len(c["labels"]) for c in data["controls"]]
    initial = [c["index"] for c in data["controls"]]
    others = [range(n) if i != control else [initial[i]] for i, n in enumerate(counts)]
    candidates = [initial] + [list(p) for p in itertools.product(*others)]
    best = None
    for positions in candidates:
        after = list(positions)
        after[control] = positions[control] - 1 if positions[control] == counts[control] - 1 else positions[control] + 1
        before_view, after_view = expected_view(data, positions), expected_view(data, after)
        pictures = any(b != a for b, a, p in zip(before_view, after_view, data["panels"]) if p["kind"] == "picture")
        readout = data["readout"] is not None and before_view[data["readout"]] != after_view[data["readout"]]
        if pictures and readout:
            return positions
        best = best or (positions if pictures else None)
    assert best is not None, f"no position of the other controls makes {data['controls'][control]['name']} change a picture"
    return best


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    return {name: entry.load()().to_html(folder / f"{name}.html", progress=False, **SMALL).path for name, entry in EXPLORERS.items()}


@pytest.fixture(scope="module")
def browser(chromium_path, playwright):
    browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


def shown(page, data) -> list:
    return page.evaluate("""(data) => data.panels.map((panel, j) => panel.kind === 'picture'
        ? [document.querySelector('img[data-panel="' + j + '"]').getAttribute('src'),
           document.querySelector('img[data-panel="' + j + '"]').nextElementSibling.textContent]
        : document.getElementById('readout').textContent)""", {"panels": data["panels"]})


def press(page, control: dict, index: int, position: int) -> None:
    """Move control ``index`` one step with the keyboard (back at its last value)."""
    last = position == len(control["labels"]) - 1
    if control["kind"] == "range":
        page.focus(f"#control-{index}")
        page.keyboard.press("ArrowLeft" if last else "ArrowRight")
    elif control["kind"] == "select":
        page.focus(f"#control-{index}")
        page.keyboard.press("ArrowUp" if last else "ArrowDown")
    elif control["kind"] == "radio":
        page.focus(f"#control-{index} input:checked")
        page.keyboard.press("ArrowLeft" if last else "ArrowRight")
    else:
        page.focus(f"#control-{index}")
        page.keyboard.press("Space")


def set_positions(page, data, positions) -> None:
    page.evaluate("""([controls, positions]) => controls.forEach((control, i) => {
        const input = document.getElementById('control-' + i);
        if (control.kind === 'radio') input.querySelectorAll('input')[positions[i]].checked = true;
        else if (control.kind === 'checkbox') input.checked = positions[i] === 1;
        else input.value = String(positions[i]);
        input.dispatchEvent(new Event('input'));
    })""", [data["controls"], positions])


@pytest.mark.parametrize("name", list(EXPLORERS))
def test_exported_page_works_from_file_without_network(name, exported, browser):
    path = exported[name]
    data = page_data(path)
    context = browser.new_context()
    page = context.new_page()
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    url = path.resolve().as_uri()
    # every request but the page itself is aborted (and recorded above)
    context.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
    try:
        page.goto(url)
        initial = [c["index"] for c in data["controls"]]
        assert shown(page, data) == expected_view(data, initial)
        readout_changes = 0
        for index, control in enumerate(data["controls"]):
            positions = moving_from(data, index)
            set_positions(page, data, positions)
            before = shown(page, data)
            assert before == expected_view(data, positions)
            label = page.evaluate(f"document.querySelector('#control-{index} + output')?.textContent ?? null")
            press(page, control, index, positions[index])
            after = shown(page, data)
            moved = list(positions)
            moved[index] += -1 if positions[index] == len(control["labels"]) - 1 else 1
            assert after == expected_view(data, moved), f"{control['name']}: the page does not show the data of the new value"
            changed = [p["title"] for b, a, p in zip(before, after, data["panels"]) if b != a and p["kind"] == "picture"]
            assert changed, f"moving {control['name']} changed no picture"
            if data["readout"] is not None and before[data["readout"]] != after[data["readout"]]:
                readout_changes += 1
            elif data["readout"] is not None and index in data["panels"][data["readout"]]["deps"]:
                pytest.fail(f"moving {control['name']} left the readout as it was, though it depends on it")
            if control["kind"] == "range":
                assert page.evaluate(f"document.querySelector('#control-{index} + output').textContent") != label
        assert readout_changes >= 1, "no control changed the readout"
        assert errors == []
        assert requests == [url], f"requested besides the page: {[r for r in requests if r != url]}"
    finally:
        context.close()
