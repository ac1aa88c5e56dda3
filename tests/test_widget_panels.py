"""The explorers' shared machinery: the bounded cache, panels that re-send only what changed,
coalesced browser changes, the one data normaliser, and the one leak-only profile."""
import asyncio
import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lrp_widgets.data import two_squares
from lrp_widgets.esn import leak_only_profile, measure_decay_rate
from lrp_widgets.models import CNN
from lrp_widgets.widgets import L1Explorer, RuleExplorer
from lrp_widgets.engine.cache import BoundedCache
from lrp_widgets.widgets.common import as_data
from lrp_widgets.widgets.panels import HeatmapPanel, MISSING_RGB, fingerprint


def test_bounded_cache_keeps_the_most_recent():
    cache, calls = BoundedCache(2), []
    make = lambda key: lambda: calls.append(key) or key * 10  # noqa: E731
    assert [cache.get(k, make(k)) for k in (1, 2, 1, 3, 1, 2)] == [10, 20, 10, 30, 10, 20]
    assert calls == [1, 2, 3, 2]  # 2 was the least recent when 3 came in
    assert len(cache) == 2 and cache.keys() == [1, 2]
    with pytest.raises(ValueError):
        BoundedCache(0)


def test_heatmap_panel_colours_in_numpy_and_sends_only_on_change():
    class S:
        values = np.array([[-1.0, 0.0], [np.nan, 2.0]])

    panel = HeatmapPanel(["values"], size=4)
    assert panel.show(S) and panel.sends == 1
    rgb = np.asarray(Image.open(io.BytesIO(bytes(panel.image.value))).convert("RGB"))
    assert rgb.shape == (4, 4, 3) and (rgb == panel.pixels).all()
    assert tuple(rgb[2, 0]) == MISSING_RGB  # NaN is grey, not zero
    assert rgb[0, 2:].min() > 250  # zero is white in the diverging map
    assert rgb[3, 3, 0] > 200 and rgb[3, 3, 2] < 50  # +max is red
    assert "2" in panel.caption.value
    assert not panel.show(S) and panel.sends == 1  # same values: nothing is sent
    assert fingerprint(np.array([np.nan])) == fingerprint(np.array([np.nan]))


def test_rule_explorer_takes_every_data_form_and_restores_train_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)).train()
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    for data in (x, (x, y), {"x": x, "y": y}, as_data((x, y))):
        e = RuleExplorer(model, data, n_samples=4)
        assert e.last_error is None and model.training and all(m.training for m in model.modules())
        assert e.state.heatmap.shape == (6,) and e.heatmap.inputs["heatmap"].shape == (6,)  # bars
        e.controls["sample"].value = 3
        assert model.training and e.state.sample == 3
    sequence_model = nn.Sequential(nn.Flatten(), nn.Linear(5 * 3, 2))
    e = RuleExplorer(sequence_model, {"x": torch.randn(4, 5, 3)})  # (N, T, F)
    assert e.state.heatmap.shape == (3, 5)  # feature x time
    with pytest.raises(TypeError, match="mapping needs the key 'x'"):
        RuleExplorer(sequence_model, {"inputs": torch.randn(4, 5, 3)})
    with pytest.raises(TypeError, match="data must be"):
        RuleExplorer(sequence_model, 3.0)


@pytest.fixture(scope="module")
def l1_explorer():
    data = two_squares(30, size=16, seed=3).test
    torch.manual_seed(0)
    models = {"CNN": {0.0: CNN(1, 2, 16), 1e-3: CNN(1, 2, 16)}}
    return L1Explorer(models, (data.x, data.y), progress=False)


def test_a_change_resends_only_the_panels_whose_fields_changed(l1_explorer):
    e = l1_explorer
    sends = {panel: panel.sends for panel in e.panels}
    e.controls["sample"].value = 5
    changed = {panel for panel in e.panels if panel.sends != sends[panel]}
    assert changed == {e.sample_heatmap}
    sends = {panel: panel.sends for panel in e.panels}
    e.controls["l1"].value = 1e-3
    changed = {panel for panel in e.panels if panel.sends != sends[panel]}
    assert {e.mean_heatmap, e.sample_heatmap, e.quality, e.share_curve} <= changed
    # a revisited state is looked up, not recomputed, and its pictures come from the panels' caches
    misses = e.states.misses, e.mean_heatmap.renders.misses
    e.controls["l1"].value = 0.0
    assert (e.states.misses, e.mean_heatmap.renders.misses) == misses


def test_browser_changes_are_coalesced_and_end_on_the_last_value(l1_explorer):
    e = l1_explorer
    slider = e.controls["sample"]

    async def drag(values):
        for value in values:  # as ipywidgets applies a value sent by the browser
            slider.set_state({"value": value})
        assert e.state.sample != values[-1]  # nothing computed while the values arrive
        await asyncio.sleep(0)

    before = e.updates
    asyncio.run(drag([1, 2, 3, 4, 7]))
    assert e.updates == before + 1 and e.state.sample == 7
    assert e.sample_heatmap.inputs["sample_map"] is e.state.sample_map
    slider.value = 2  # from Python: at once
    assert e.state.sample == 2


def test_leak_only_profile_resets_on_the_esn_pieces():
    profile = leak_only_profile(30, 0.5, 4)
    starts = np.flatnonzero(np.diff(profile) < 0) + 1
    assert list(starts) == [8, 16, 23]  # pieces 8, 8, 7, 7, as the ESN cuts them
    # a profile decaying exactly as the leak-only theory measures as -log(1 - alpha)
    assert measure_decay_rate(profile, slices=4) == pytest.approx(-np.log(0.5))


def test_a_moving_marker_is_drawn_on_a_cached_background():
    from lrp_widgets.widgets.panels import PlotPanel

    class State:
        curve = np.array([0.2, 0.8, 0.5])
        position = 0

    drawn = []
    panel = PlotPanel(["curve", "position"], lambda ax, curve: drawn.append(1) or ax.plot(curve, color="tab:green"), marker="position")
    panel.ax.set_xlim(-0.5, 2.5)
    panel.show(State)
    first = panel.pixels.copy()
    State.position = 2
    panel.show(State)
    assert len(drawn) == 1  # the curve was drawn once; only the marker moved
    differs = np.flatnonzero((first != panel.pixels).any(axis=(0, 2)))
    assert len(differs) == 2  # the old column cleared, the new one drawn
    left, right = (panel.ax.transData.transform([(x, 0)])[0, 0] for x in (0, 2))
    assert abs(differs[0] - left) <= 1 and abs(differs[1] - right) <= 1
    assert (panel.pixels[:, differs[1]] == 0).all(axis=-1).sum() > 50  # a dashed black line
