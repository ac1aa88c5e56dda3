"""The cached neuron-path study: its summary statistics and the file notebook 08 reads."""
import numpy as np
import pytest

from lrp_widgets.zoo import path_study


def test_summarize_fidelity_counts_rising_curves_and_ratios():
    curves = [[4.0, 2.0, 1.0], [4.0, 5.0, 2.0], [2.0, 2.0, 2.0]]
    summary = path_study.summarize_fidelity(curves)
    assert summary["never_rises"] == pytest.approx(2 / 3)  # the second curve rises once
    assert summary["falls"] == pytest.approx(2 / 3)        # the third ends where it began
    assert summary["ratio"] == pytest.approx(np.mean([0.25, 0.5, 1.0]))
    np.testing.assert_allclose(summary["relative_curve"], np.mean([[1, 0.5, 0.25], [1, 1.25, 0.5], [1, 1, 1]], axis=0))


def test_cached_study_has_the_trained_models_it_promises():
    study = path_study.load_results()
    settings = study["settings"]
    trained = {seed: r for seed, r in study["results"].items() if not r["failed"]}
    failed = {seed: r for seed, r in study["results"].items() if r["failed"]}
    assert len(trained) == settings["n_models"]
    assert all(r["test_accuracy"] >= settings["min_accuracy"] for r in trained.values())
    assert all(r["test_accuracy"] < settings["min_accuracy"] and set(r) == {"test_accuracy", "failed"} for r in failed.values())
    for r in trained.values():
        assert all(len(values) == settings["n_samples"] for values in r["shares"].values())
        assert len(r["best_path_differs"]) == settings["n_samples"]
        for key, summary in r["fidelity"].items():
            assert len(summary["relative_curve"]) == len(settings["ks"]), key
