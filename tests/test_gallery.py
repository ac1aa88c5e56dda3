"""`lrp-widgets gallery`: every explorer's default view and one changed state as PNG files,
rendered headless; failures are named, one broken explorer does not stop the others."""
import io
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import pytest
from PIL import Image

from lrp_widgets import cli
from lrp_widgets.widgets import Explorer
from lrp_widgets.widgets.base import State
from lrp_widgets.widgets.panels import ImagePanel, TextPanel

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def picture(path) -> np.ndarray:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path.name} is not a PNG"
    image = Image.open(io.BytesIO(data))
    image.verify()  # a truncated or corrupt file fails here
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def assert_non_trivial(pixels: np.ndarray, name: str):
    height, width, _ = pixels.shape
    assert width >= 400 and height >= 150, f"{name}: {width}x{height} is too small for a figure"
    drawn = (pixels.min(axis=2) < 230).mean()
    assert drawn > 0.03, f"{name}: only {drawn:.1%} of the picture is drawn on"
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert colours > 50, f"{name}: {colours} colours, a blank or flat picture"


def test_gallery_covers_every_explorer():
    assert set(cli.GALLERY) == set(cli.MODULES), "every explorer needs a changed state in cli.GALLERY"


@pytest.mark.parametrize("name", list(cli.GALLERY))
def test_gallery_renders_default_and_changed_view(name, tmp_path):
    if cli.explorer_class(name) is None:
        pytest.skip(f"{name} cannot be imported yet: lrp_widgets.widgets.{cli.MODULES[name]} does not exist")
    written = cli.render_gallery(tmp_path, [name], progress=False)
    assert [p.name for p in written] == [f"{name}.png", f"{name}_changed.png"]
    default, changed = (picture(p) for p in written)
    assert_non_trivial(default, f"{name}.png")
    assert_non_trivial(changed, f"{name}_changed.png")
    if default.shape == changed.shape:
        differing = (np.abs(default.astype(int) - changed.astype(int)).max(axis=2) > 24).sum()
        assert differing > 100, f"{name}: the changed state differs from the default in {differing} pixels only"
    for path in written:
        assert path.stat().st_size < 150_000, f"{path.name} is {path.stat().st_size} bytes; keep README pictures small"


@dataclass(frozen=True)
class TinyState(State):
    shift: int
    image: np.ndarray


class TinyExplorer(Explorer):
    """A cheap explorer for the gallery's own logic: one slider shifting a gradient image."""

    def __init__(self):
        super().__init__("tiny")
        panel = ImagePanel(["image"], title="gradient", cmap="viridis", limits=(0, 2), size=256)
        readout = TextPanel(["shift"], lambda shift: {"shift": shift})
        self.connect({"shift": widgets.IntSlider(value=0, min=0, max=8)}, [[panel, ImagePanel(["image"], title="again", size=256)]], readout)

    def compute(self, values):
        ramp = np.add.outer(np.arange(16), np.arange(16)) / 30
        return TinyState(values["shift"], np.roll(ramp, values["shift"], axis=1))


@pytest.fixture
def tiny(monkeypatch):
    """The gallery knows TinyExplorer (changed: shift=4) and GhostExplorer (module not written)."""
    monkeypatch.setattr(cli, "GALLERY", {"TinyExplorer": {"shift": 4}, "GhostExplorer": {}})
    monkeypatch.setattr(cli, "MODULES", {"TinyExplorer": "tiny", "GhostExplorer": "ghost"})
    real = cli.explorer_class
    monkeypatch.setattr(cli, "explorer_class", lambda name: TinyExplorer if name == "TinyExplorer" else real(name))


def test_gallery_command_writes_the_files(tmp_path, tiny, capsys):
    assert cli.main(["gallery", "--out", str(tmp_path / "out")]) == 0  # GhostExplorer: skipped
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["TinyExplorer.png", "TinyExplorer_changed.png"]
    captured = capsys.readouterr()
    assert "wrote 2 pictures" in captured.out and "GhostExplorer: skipped" in captured.err
    default, changed = (picture(tmp_path / "out" / n) for n in ("TinyExplorer.png", "TinyExplorer_changed.png"))
    assert default.shape == changed.shape and not np.array_equal(default, changed)


def test_gallery_names_every_failure_and_keeps_going(tmp_path, tiny, monkeypatch, capsys):
    monkeypatch.setitem(cli.GALLERY, "TinyExplorer", {"no_such_control": 1})
    with pytest.raises(cli.GalleryError) as raised:
        cli.render_gallery(tmp_path, ["GhostExplorer", "TinyExplorer"], progress=False)
    failures = raised.value.failures
    assert set(failures) == {"GhostExplorer", "TinyExplorer"}
    assert "ghost does not exist" in failures["GhostExplorer"]
    assert "no_such_control" in failures["TinyExplorer"] and "shift" in failures["TinyExplorer"]
    assert (tmp_path / "TinyExplorer.png").exists()  # the default view was written before the change failed
    assert cli.main(["gallery", "--out", str(tmp_path), "--only", "TinyExplorer"]) == 1
    assert "no_such_control" in capsys.readouterr().err


def test_gallery_refuses_unknown_names_and_changes_that_change_nothing(tmp_path, tiny, monkeypatch):
    with pytest.raises(ValueError, match="unknown explorer"):
        cli.render_gallery(tmp_path, ["NoSuchExplorer"], progress=False)
    monkeypatch.setitem(cli.GALLERY, "TinyExplorer", {"shift": 0})  # the default value
    with pytest.raises(cli.GalleryError, match="left the picture as it was"):
        cli.render_gallery(tmp_path, ["TinyExplorer"], progress=False)


def test_gallery_largest_means_last_option_or_maximum():
    assert cli._control_value(widgets.SelectionSlider(options=[("a", 1), ("b", 2)]), "largest") == 2
    assert cli._control_value(widgets.Dropdown(options=["x", "y"]), "largest") == "y"
    assert cli._control_value(widgets.IntSlider(min=0, max=7), "largest") == 7
    assert cli._control_value(widgets.IntSlider(min=0, max=7), 3) == 3
