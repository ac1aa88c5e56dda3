"""The zoo's cached studies (lrp_widgets/zoo/studies.py): shipped results match their recipes,
and the study functions run on small settings."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lrp_widgets.zoo import studies


@pytest.mark.parametrize("name", sorted(studies.STUDIES))
def test_shipped_results_match_recipe(name):
    document = studies.load_study(name)
    assert document["study"] == name
    assert document["settings"] == json.loads(json.dumps(studies.STUDIES[name].settings))
    assert document["results"]["rows"], name
    assert (studies.RESULTS_DIR / f"{name}.json").stat().st_size < 200_000  # small files in the package


def test_unknown_and_missing_study(tmp_path):
    with pytest.raises(KeyError, match="no study"):
        studies.load_study("nope")
    with pytest.raises(FileNotFoundError, match="python -m lrp_widgets.zoo study esn_decay"):
        studies.load_study("esn_decay", results_dir=tmp_path)


def test_esn_decay_small_conserves():
    torch.set_num_threads(1)
    rows = studies.esn_decay(size=16, seeds=(0,), leak_rates=(0.3,), directions=("right_to_left",), n_explained=10)["rows"]
    assert {row["rule"] for row in rows} == {"epsilon", "zplus"}
    for row in rows:
        assert row["conservation"] < 1e-4
        assert 0 <= row["readout_share"] <= 1 and len(row["profile"]) == 16


def test_leak_sweep_small():
    result = studies.leak_sweep(size=16, seeds=(0,), leak_rates=(0.05, 0.9))
    row = result["rows"][0]
    assert set(row["accuracy"]) == {"0.05", "0.9"}
    assert row["suggested"]["linearised"] > row["suggested"]["leak_only"]
    assert 0.5 < row["rho_eff"] < 0.81


def test_paper_esn_has_no_bias_unless_asked():
    assert studies.paper_esn(8, 0.1, 0).bias.abs().max() == 0
    assert studies.paper_esn(8, 0.1, 0, bias=True).bias.abs().max() > 0
    assert studies.paper_esn(8, 0.1, 0).input_weight.abs().max() <= 0.1


def test_informative_share_and_table():
    relevance = torch.zeros(2, 4, 4)
    relevance[:, 0, 0] = 3.0
    relevance[:, 1, 1] = -1.0
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, 0] = True
    assert studies.informative_share(relevance, mask) == pytest.approx(0.75)
    assert studies.mean_sd([1.0, 3.0]) == f"2.000 +- {np.std([1, 3], ddof=1):.3f} (n = 2)"
    table = studies.findings_table([("a", "b", "holds")])
    assert table.splitlines()[0].startswith("| finding (paper)") and table.splitlines()[-1] == "| a | b | holds |"
