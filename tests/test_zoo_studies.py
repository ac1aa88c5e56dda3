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


def test_rnn_comparison_small():
    torch.set_num_threads(1)
    result = studies.rnn_comparison(seeds=(0,), cases=(("two_squares", "right_to_left"),), size=16, n_explained=12, steps=4,
                                    hidden=4, epochs=2)
    rows = result["rows"]
    assert [row["model"] for row in rows] == ["ESN", "LSTM", "GRU"]
    by_model = {row["model"]: row for row in rows}
    # trainable parameters: the ESN's ridge readout only; the gated cells 4 (LSTM) or 3 (GRU) blocks of weights
    assert by_model["ESN"]["n_parameters"] == 2 * 301
    assert by_model["LSTM"]["n_parameters"] == 4 * (16 * 4 + 4 * 4 + 2 * 4) + 4 * 2 + 2
    assert by_model["GRU"]["n_parameters"] == 3 * (16 * 4 + 4 * 4 + 2 * 4) + 4 * 2 + 2
    assert result["area"]["two_squares"] == pytest.approx(4 / 256)
    for row in rows:
        assert len(row["profile"]) == 16 and max(row["profile"]) == 1.0
        assert 0 <= row["share"] <= 1 and 0 <= row["accuracy"] <= 1 and row["train_seconds"] > 0
        assert np.isfinite(row["decay_rate"]) and np.isfinite(row["aopc_accuracy_morf"])
    # the ESN reads the informative square in the last steps: it learns it, and the relevance finds it
    assert by_model["ESN"]["accuracy"] > 0.9 and by_model["ESN"]["share"] > 5 * result["area"]["two_squares"]


def test_vit_removal_numbers_on_the_shipped_vit():
    """The ViT study's AOPC code (shared with notebook 11): the explanations' rankings remove the
    logit faster than a random order, and removing patches in a ranking's order uses the scores."""
    from lrp_widgets import zoo
    from lrp_widgets.zoo import attention_study

    torch.set_num_threads(1)
    model, data = zoo.load("shapes_vit"), zoo.dataset("shapes_vit")
    x = data.test.x[:16]
    numbers = attention_study.vit_seed_numbers(model, x, seed=0, steps=3)
    assert set(numbers["aopc"]) == set(attention_study.METHODS)
    assert numbers["aopc"]["AttnLRP"] > numbers["aopc"]["random"] + 1.0
    assert 0 < numbers["kept"]["AttnLRP"] < 2
    with torch.no_grad():
        target = model(x).argmax(1)
    scores = attention_study.patch_scores(model, x, target, "AttnLRP")
    assert scores.shape == (16, 36)
    best = attention_study.patch_aopc(model, x, target, scores, steps=3)
    worst = attention_study.patch_aopc(model, x, target, -scores, steps=3)
    assert best > worst
    with pytest.raises(ValueError, match="unknown ranking"):
        attention_study.patch_scores(model, x, target, "saliency")


def test_over_trained_seeds_records_the_seeds_that_do_not_train():
    from types import SimpleNamespace

    from lrp_widgets.zoo.path_study import over_trained_seeds

    x = torch.eye(2).repeat(4, 1)
    labels = x.argmax(1)

    def train_seed(seed):  # odd seeds "do not train": their labels are the wrong ones
        model = torch.nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            model.weight.copy_(torch.eye(2))
        y = labels if seed % 2 == 0 else 1 - labels
        return model, SimpleNamespace(test=SimpleNamespace(x=x, y=y))

    rows = over_trained_seeds(train_seed, lambda model, data, seed: {"measured": seed}, n_models=2, max_seed=9, min_accuracy=0.5)
    assert [row["seed"] for row in rows] == [0, 1, 2]  # stops once two have trained
    assert [row.get("measured") for row in rows] == [0, None, 2]
    assert [row["test_accuracy"] for row in rows] == [1.0, 0.0, 1.0]
