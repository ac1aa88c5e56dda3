"""Neuron-path findings over seeds, cached: ``python -m lrp_widgets.zoo.path_study``.

Notebook 08 asserts its findings over 5 MiniVGGs; training one takes minutes, so the numbers are
computed here and written to ``results/paths_minivgg.json`` (settings, per-seed numbers, seconds,
torch version: the format of the zoo's other studies). Seed ``s`` draws the shapes data set
(``shapes(n=3000, seed=s)``) and the initial weights and batch order of the ``shapes_minivgg``
recipe; seed 0 is the shipped zoo model itself. A seed whose model does not train (test
accuracy below ``min_accuracy``; MiniVGG with dropout occasionally collapses to one class) is
recorded as failed and the next seed is tried, until ``n_models`` models have trained. Per
trained seed, over the first ``n_samples`` test images:

* the share of positive mass on the object's mask of the full LRP map, the k-path relevance
  (paths through any neuron, and through the GetOptimizer-selected neurons only, the paper's
  mode), the path channels' activation maps and deconvolutions at two conv layers;
* fidelity (the project's definition: MSE and SMAPE between the k-path and the full heatmap)
  for k = 1..20, with the default composite and with z+ everywhere, in both path modes;
* how often the best path of the paper's mode differs from the unrestricted one.

An image on which no path carries positive relevance gets NaN for the activation and
deconvolution shares (there are no path channels); average with ``np.nanmean``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .. import data as datasets
from .. import models
from ..engine.composites import Composite
from ..engine import rules, types
from ..paths import PathFinder, activation_heatmap, deconvolve
from ..train import accuracy, train

RESULTS_DIR = Path(__file__).resolve().parent / "results"
NAME = "paths_minivgg"
SETTINGS = {"n_models": 5, "max_seed": 9, "min_accuracy": 0.9, "n_samples": 40, "k": 5, "ks": list(range(1, 21)),
            "layers": ["features.10", "features.4"]}
# what a cached seed's numbers depend on (a resumed run keeps seeds measured with these)
_MEASURED_WITH = ("n_samples", "k", "ks", "layers")


def trained_seed(name: str, seed: int):
    """The zoo recipe ``name`` with seed ``seed`` for the data and the training (initial weights,
    batch order); seed 0 is the shipped zoo model itself. Returns ``(model in eval mode, data)``."""
    from . import build, load

    recipe = build.RECIPES[name]
    data = datasets.load({**recipe.dataset, "seed": seed})
    if seed == recipe.seed and recipe.dataset.get("seed") == 0:
        return load(name).eval(), data
    torch.manual_seed(seed)
    model = models.build(recipe.architecture)
    train(model, data, epochs=recipe.epochs, lr=recipe.lr, batch_size=recipe.batch_size, seed=seed, progress=False)
    return model.eval(), data


def over_trained_seeds(train_seed, measure, n_models: int, max_seed: int, min_accuracy: float) -> list:
    """One row per seed 0, 1, ... of ``train_seed(seed) -> (model, data)``: the seed and its test
    accuracy, plus ``measure(model, data, seed)`` (a dict) where the model trained (test accuracy >=
    ``min_accuracy``); stops once ``n_models`` have trained. A seed that does not train is recorded
    and skipped, so a study reports its failures instead of hiding them."""
    rows: list = []
    trained = 0
    for seed in range(max_seed + 1):
        if trained >= n_models:
            break
        model, data = train_seed(seed)
        row: dict = {"seed": seed, "test_accuracy": accuracy(model, data.test.x, data.test.y)}
        rows.append(row)
        if row["test_accuracy"] >= min_accuracy:
            row.update(measure(model, data, seed))
            trained += 1
    return rows


def trained_minivgg(seed: int):
    """The shapes_minivgg recipe with seed ``seed`` (see :func:`trained_seed`); seed 0 is the zoo model."""
    return trained_seed("shapes_minivgg", seed)


def _object_share(heat: np.ndarray, mask: np.ndarray) -> float:
    positive = np.clip(heat, 0, None)
    return float((positive * mask).sum() / max(positive.sum(), 1e-30))


def _never_rises(curve: np.ndarray) -> bool:
    return bool(np.all(np.diff(curve) <= 1e-12 * np.abs(curve).max()))


def zplus_everywhere() -> Composite:
    """z+ on every linear and convolutional layer: all messages non-negative (notebook 08, section 5)."""
    return Composite(layer_rules={types.LINEAR: rules.ZPlus()}, name="z+ everywhere")


def summarize_fidelity(curves) -> dict:
    """Per-image fidelity curves (images, ks) -> the shares of images whose curve never rises and
    whose last value is below the first, the mean ratio last / first, and the mean curve / first."""
    curves = np.asarray(curves, dtype=float)
    rises = ~np.all(np.diff(curves, axis=1) <= 1e-12 * np.abs(curves).max(axis=1, keepdims=True), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-zero curve (no path, no map) has no ratio
        relative = curves / curves[:, :1]
    return {"never_rises": float((~rises).mean()), "falls": float((curves[:, -1] < curves[:, 0]).mean()),
            "ratio": float(np.nanmean(relative[:, -1])), "relative_curve": np.nanmean(relative, 0).tolist()}


def measure(model, data, n_samples: int, k: int, ks, layers) -> dict:
    """The per-seed numbers (module docstring): shares per image, fidelity summarized."""
    test = data.test
    masks = np.asarray(test.masks[:n_samples], dtype=bool)
    out: dict = {"test_accuracy": accuracy(model, test.x, test.y), "area": float(masks.mean())}
    shares: dict = {}
    fidelity: dict = {}
    differs, selected_fraction = [], []
    for sample in range(n_samples):
        x = test.x[sample : sample + 1]
        for composite_name, composite in (("epsilon_plus_flat", "epsilon_plus_flat"), ("zplus", zplus_everywhere())):
            finder = PathFinder(model, x, composite=composite)
            for through in ("all", "selected"):
                curve = finder.fidelity(ks, through=through)
                fidelity.setdefault(f"{composite_name}/{through}/mse", []).append(curve.mse.tolist())
                fidelity.setdefault(f"{composite_name}/{through}/smape", []).append(curve.smape.tolist())
            if composite_name != "epsilon_plus_flat":
                continue
            full = finder.full_heatmap[0].sum(0).double().numpy()
            shares.setdefault("full LRP", []).append(_object_share(full, masks[sample]))
            for through in ("all", "selected"):
                heat = finder.heatmap(k, through=through)[0].sum(0).double().numpy()
                shares.setdefault(f"k-path relevance ({through})", []).append(_object_share(heat, masks[sample]))
            by_layer = finder.paths(k).neurons_by_layer()
            for layer in layers:
                channels = [int(c) for c in by_layer[layer]]
                if not channels:  # no path carries positive relevance (e.g. f <= 0): nothing to look at
                    shares.setdefault(f"activation {layer}", []).append(float("nan"))
                    shares.setdefault(f"deconvolution {layer}", []).append(float("nan"))
                    continue
                activation = activation_heatmap(model, x, layer, channels)[0].double().numpy()
                shares.setdefault(f"activation {layer}", []).append(_object_share(activation.reshape(masks[sample].shape), masks[sample]))
                deconvolution = sum(deconvolve(model, x, layer, c)[0] for c in channels)
                shares.setdefault(f"deconvolution {layer}", []).append(
                    _object_share(np.abs(deconvolution.double().numpy()).sum(0), masks[sample]))
            best, best_selected = finder.paths(1), finder.paths(1, through="selected")
            differs.append(len(best) != len(best_selected) or (len(best) > 0 and best[0].neurons != best_selected[0].neurons))
            selections = finder.selections()
            selected_fraction.append(float(np.mean([len(s) / len(s.scores) for s in selections.values()])))
    fidelity = {key: summarize_fidelity(curves) for key, curves in fidelity.items()}
    out.update(shares=shares, fidelity=fidelity, best_path_differs=differs, selected_fraction=selected_fraction)
    return out


def run(results_dir: Path | str = RESULTS_DIR, threads: int = 1, settings: dict | None = None) -> dict:
    """Train (or load) each seed's model, measure it, and write ``results/paths_minivgg.json``
    after each seed (an interrupted run keeps what it finished; a new run resumes from it)."""
    settings = dict(SETTINGS if settings is None else settings)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    path = Path(results_dir) / f"{NAME}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: dict = {}
    earlier = 0.0
    if path.is_file():  # resume: keep the seeds an earlier run with the same settings finished
        previous_run = json.loads(path.read_text())
        if all(previous_run.get("settings", {}).get(key) == settings[key] for key in _MEASURED_WITH):
            results, earlier = previous_run["results"], float(previous_run.get("seconds", 0.0))
            for entry in results.values():  # older runs kept every image's curve: summarize them
                for key, value in entry.get("fidelity", {}).items():
                    if isinstance(value, list):
                        entry["fidelity"][key] = summarize_fidelity(value)
    def mark(seed):
        entry = results[str(seed)]
        if entry["test_accuracy"] < settings["min_accuracy"]:  # keep the accuracy that says so, not the maps
            results[str(seed)] = {"test_accuracy": entry["test_accuracy"], "failed": True}
        else:
            entry["failed"] = False

    def write():
        document = {"study": NAME, "description": "neuron paths on trained MiniVGGs (shapes): object shares, fidelity, paper mode",
                    "settings": settings, "torch": torch.__version__, "seconds": round(earlier + time.perf_counter() - start, 1),
                    "results": results}
        path.write_text(json.dumps(document, separators=(",", ":")) + "\n")
        return document

    for seed in list(results):
        mark(seed)
    try:
        for seed in range(settings["max_seed"] + 1):
            if sum(not entry["failed"] for entry in results.values()) >= settings["n_models"]:
                break
            if str(seed) in results:
                continue
            model, data = trained_minivgg(seed)
            results[str(seed)] = measure(model, data, settings["n_samples"], settings["k"], settings["ks"], settings["layers"])
            mark(seed)
            print(f"seed {seed} done after {write()['seconds']} s", flush=True)
    finally:
        torch.set_num_threads(previous)
    return write()


def load_results(results_dir: Path | str = RESULTS_DIR) -> dict:
    """The cached study (see :func:`run`)."""
    path = Path(results_dir) / f"{NAME}.json"
    if not path.is_file():
        raise FileNotFoundError("the path study has not been run; run `python -m lrp_widgets.zoo.path_study`")
    return json.loads(path.read_text())


if __name__ == "__main__":
    run()
