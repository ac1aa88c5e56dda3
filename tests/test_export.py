"""Exported HTML pages (issue 17), headless: a page's picture for a control value is the live
explorer's rendering for that value, pixel for pixel; pictures are stored once per distinct
picture and per the controls a panel depends on; default grids stay within budget; the command."""
from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrp_widgets import cli
from lrp_widgets.widgets import export
from lrp_widgets.widgets.registry import EXPLORERS

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"samples": 2, "max_states": 48}


def page_data(path) -> dict:
    text = Path(path).read_text(encoding="utf-8")
    marker = '<script type="application/json" id="explorer-data">'
    start = text.index(marker) + len(marker)
    return json.loads(text[start : text.index("</script>", start)].replace("<\\/", "</"))


def lookup(data: dict, panel: dict, positions: list):
    """The ids a panel shows at ``positions`` (its table is row-major over its deps)."""
    k = 0
    for d in panel["deps"]:
        k = k * len(data["controls"][d]["labels"]) + positions[d]
    return (panel["pictures"][k], panel["captions"][k]) if panel["kind"] == "picture" else panel["texts"][k]


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.fixture(scope="module")
def explorers():
    return {}


def build(explorers: dict, name: str):
    if name not in explorers:
        explorers[name] = EXPLORERS[name].load()()
    return explorers[name]


@pytest.mark.parametrize("name", list(EXPLORERS))
def test_page_pictures_are_the_live_renderings(name, explorers, tmp_path):
    explorer = build(explorers, name)
    report = explorer.to_html(tmp_path / f"{name}.html", progress=False, **SMALL)
    data = page_data(report.path)
    assert report.size == report.path.stat().st_size and report.pictures == len(data["pictures"])
    initial = [c["index"] for c in data["controls"]]
    picture_panels = [p for p in explorer.panels if hasattr(p, "image")]
    checked = 0
    for index, control in enumerate(data["controls"]):
        assert len(control["values"]) >= 2
        for position in (0, len(control["values"]) - 1):  # two values of each control
            positions = list(initial)
            positions[index] = position
            with explorer.hold():
                for c, p in zip(data["controls"], positions):
                    explorer.controls[c["name"]].value = c["values"][p]
            assert explorer.last_error is None, explorer.last_error
            for live, panel in zip(explorer.panels, data["panels"]):
                if panel["kind"] == "picture":
                    picture, caption = lookup(data, panel, positions)
                    page_pixels = pixels(base64.b64decode(data["pictures"][picture]))
                    np.testing.assert_array_equal(page_pixels, pixels(live.image.value), err_msg=f"{control['name']}: {panel['title']}")
                    np.testing.assert_array_equal(page_pixels, live.pixels)
                    assert data["texts"][caption] == live.caption.value
                    checked += 1
                else:
                    assert data["texts"][lookup(data, panel, positions)] == explorer.readout.value
    assert checked == 2 * len(data["controls"]) * len(picture_panels)


def test_panels_are_stored_by_the_controls_they_depend_on(explorers, tmp_path):
    rule = build(explorers, "rule")
    report = rule.to_html(tmp_path / "rule.html", grid={"composite": ["lrp0", "epsilon_gamma_box"]}, progress=False, **SMALL)
    assert report.depends_on["input"] == ["sample"]  # the input does not change with the rules
    assert report.depends_on["relevance"] == ["composite", "epsilon", "gamma", "sample"]
    data = page_data(report.path)
    by_title = {panel["title"]: panel for panel in data["panels"]}
    assert len(by_title["input"]["pictures"]) == len(report.grid["sample"])
    # identical pictures are stored once: LRP-0 ignores epsilon and gamma
    assert len(set(data["pictures"])) == len(data["pictures"])
    relevance = by_title["relevance"]["pictures"]
    assert len(set(relevance)) < len(relevance)
    l1 = build(explorers, "l1")
    report = l1.to_html(tmp_path / "l1.html", progress=False, **SMALL)
    assert "sample" not in report.depends_on["mean relevance (test set)"]
    assert report.depends_on["one sample"] == ["l1", "architecture", "sample"]


def test_a_grid_narrows_controls_and_bad_grids_are_refused(explorers, tmp_path):
    leak = build(explorers, "leak_rate")
    report = leak.to_html(tmp_path / "leak.html", grid={"leak_rate": [0.01, 0.1, 0.5], "slices": [1], "direction": ["left_to_right"],
                                                                "compare": ["none"]},
                          progress=False, samples=2)
    assert report.grid == {"leak_rate": [0.01, 0.1, 0.5], "slices": [1], "direction": ["left_to_right"], "sample": [0, 1],
                           "compare": ["none"]}
    assert report.states == 6 and "leak_rate [0.01, 0.1, 0.5]" in str(report) and "MB" in str(report)
    page = report.path.read_text()
    assert "http://" not in page and "https://" not in page and "leak_rate [0.01, 0.1, 0.5]" in page
    with pytest.raises(ValueError, match="no control 'leak'.*leak_rate, slices"):
        leak.to_html(tmp_path / "x.html", grid={"leak": [0.1]})
    with pytest.raises(ValueError, match="outside the slider's range"):
        leak.to_html(tmp_path / "x.html", grid={"leak_rate": [2.0]})
    with pytest.raises(ValueError, match="slices cannot be \\[3\\]"):
        leak.to_html(tmp_path / "x.html", grid={"slices": [3]})


def test_default_grids_stay_within_their_budget(explorers):
    for name in EXPLORERS:
        explorer = build(explorers, name)
        samples, budget = export.DEFAULTS[type(explorer).__name__]
        grid = export.default_grid(explorer)
        assert int(np.prod([len(v) for v in grid.values()])) <= budget, name
        assert grid["sample"] == list(range(samples)), name
        for control, values in grid.items():
            allowed = export.control_values(explorer.controls[control])
            assert len(values) >= 2 and all(v in allowed for v in values), (name, control)


def test_compact_png_keeps_the_pixels():
    rng = np.random.default_rng(0)
    few = rng.integers(0, 255, (7, 3), dtype=np.uint8)[rng.integers(0, 7, (40, 30))]  # a palette image
    many = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)  # more than 256 colours
    for rgb in (few, many):
        np.testing.assert_array_equal(pixels(export.compact_png(rgb)), rgb)
    assert Image.open(io.BytesIO(export.compact_png(few))).mode == "P"


def test_export_command_writes_a_page(tmp_path, capsys):
    out = tmp_path / "l1.html"
    assert cli.main(["export", "l1", "--out", str(out), "--grid", "sample=0,1", "--grid", "architecture=CNN"]) == 0
    printed = capsys.readouterr().out
    assert out.exists() and "MB" in printed and "sample [0, 1]" in printed and "architecture [CNN]" in printed
    assert cli.main(["export", "nonsense", "--out", str(out)]) == 2
    assert "unknown explorer 'nonsense'" in capsys.readouterr().err
    assert cli.main(["export", "l1", "--out", str(out), "--grid", "sample"]) == 2
    assert "CONTROL=VALUE" in capsys.readouterr().err


def test_export_help_imports_nothing_heavy():
    script = ("import sys\nsys.argv = ['lrp-widgets', 'export', '--help']\nfrom lrp_widgets.cli import main\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n"
              "print('HEAVY', sorted(m for m in ('torch', 'numpy', 'matplotlib', 'ipywidgets') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "HEAVY []" in done.stdout and "--grid" in done.stdout, done.stdout + done.stderr


@pytest.mark.slow
def test_every_default_export_is_at_most_5_mb(tmp_path):
    reports = export.export_explorers(list(EXPLORERS), tmp_path, progress=False)
    for report in reports:
        assert report.size <= 5_000_000, str(report)
    index = (tmp_path / "index.html").read_text()
    assert all(f"href='{name}.html'" in index for name in EXPLORERS)
