"""Measured findings over seeds, cached in the zoo: ``python -m lrp_widgets.zoo study [NAME ...]``.

Every study is a :class:`Study` (a function and its settings). Running one computes its numbers
over several seeds and writes ``results/<name>.json`` (settings, per-seed numbers, seconds,
torch version); the notebooks read them with :func:`load_study` so they stay under two minutes.
A seed ``s`` seeds the reservoir (or the initial weights and batch order) and the data draw.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import data as datasets
from .. import models
from ..esn import ESN, effective_radius, explain_esn, image_to_sequence, readout_leak, suggest_leak_rate
from ..train import accuracy, sparsity, train
from .attention_study import vit_removal
from .path_study import _object_share, over_trained_seeds, trained_minivgg
from .rnn_study import rnn_comparison

__all__ = ["Study", "STUDIES", "RESULTS_DIR", "run_study", "load_study", "paper_esn", "informative_share",
           "mean_sd", "findings_table"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Study:
    """A cached measurement: ``function(**settings) -> dict`` (JSON-able)."""

    function: Callable
    settings: dict = field(default_factory=dict)
    description: str = ""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
#: The composites for convolutional networks that the composite study compares (the transformer
#: composites, attnlrp and cp_lrp, are registered too but are not about CNNs).
CNN_COMPOSITES = ("lrp0", "epsilon", "epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1")

def paper_esn(n_inputs: int, leak_rate: float, seed: int, bias: bool = False, n_reservoir: int = 300,
              slices: int = 1, ridge: float = 1e-6) -> ESN:
    """The paper's ESN: 300 units, spectral radius 0.8, density 0.3, W_in in [-0.1, 0.1], no
    reservoir bias unless ``bias`` (then ``b`` in [-0.1, 0.1], the package's default)."""
    esn = ESN(n_inputs, n_outputs=2, n_reservoir=n_reservoir, leak_rate=leak_rate, spectral_radius=0.8,
              density=0.3, input_scale=0.1, ridge=ridge, slices=slices, seed=seed)
    if not bias:
        esn.bias = torch.zeros_like(esn.bias)
    return esn


def informative_share(relevance, mask) -> float:
    """Share of the total |relevance| (pooled over samples) on the pixels of ``mask`` (H, W)."""
    magnitude = torch.as_tensor(relevance).abs().reshape(-1, *mask.shape).sum(0)
    return float(magnitude[torch.as_tensor(mask)].sum() / magnitude.sum())


def mean_sd(values, digits: int = 3) -> str:
    """``"m +- s (n = k)"`` with the sample standard deviation (ddof 1)."""
    values = np.asarray(values, dtype=float)
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.{digits}f} +- {sd:.{digits}f} (n = {len(values)})"


def findings_table(rows) -> str:
    """Markdown table "finding (paper) | measured here | verdict" from (finding, measured, verdict) rows."""
    lines = ["| finding (paper) | measured here (mean +- sd, n seeds) | holds / does not hold / not comparable (why) |",
             "|---|---|---|"]
    def cell(text) -> str:  # a "|" inside a cell (|R|) would split it
        return str(text).replace("\\|", "|").replace("|", "\\|")

    lines += [f"| {cell(finding)} | {cell(measured)} | {cell(verdict)} |" for finding, measured, verdict in rows]
    return "\n".join(lines)


def _squares(size: int, seed: int):
    return datasets.two_squares(n_per_class=250, size=size, noise=0.1, seed=seed)


def _sequences(dataset, direction="left_to_right"):
    return image_to_sequence(dataset.train.x, direction), image_to_sequence(dataset.test.x, direction)


# --------------------------------------------------------------------------------------------
# 1. decay of relevance with both ESN rules
# --------------------------------------------------------------------------------------------
def esn_decay(size=32, seeds=(0, 1, 2, 3, 4), leak_rates=(0.05, 0.1, 0.2, 0.3, 0.5), bias=False,
              directions=("left_to_right", "right_to_left"), n_explained=100) -> dict:
    """Measured decay rate and leaked relevance of both rules, per seed, direction and leak rate."""
    rows = []
    for seed in seeds:
        data = _squares(size, seed)
        base = paper_esn(size, 0.1, seed, bias=bias)
        for direction in directions:
            X_train, X_test = _sequences(data, direction)
            X_test = X_test[:n_explained]
            for leak_rate in leak_rates:
                esn = base.with_leak_rate(leak_rate).fit(X_train, data.train.y)
                output, features = esn(X_test), esn.final_states(X_test)
                for rule in ("epsilon", "zplus"):
                    explanation = explain_esn(esn, X_test, rule=rule)
                    explained = explanation.explained_output
                    readout = readout_leak(output, features, esn, explanation.target, rule=rule)
                    profile = explanation.time_profile.abs().mean(0)
                    rows.append({
                        "seed": seed, "direction": direction, "leak_rate": leak_rate, "rule": rule,
                        "decay_rate": explanation.decay_rate,
                        "leaked_share": float((explanation.leaked / explained).mean()),
                        "readout_share": float((readout / explained).mean()),
                        "conservation": float(abs(explanation.conservation().residual()).max()),
                        "profile": [float(f"{v:.4g}") for v in (profile / profile.max()).tolist()],  # by column
                        "accuracy": esn.score(X_test, data.test.y[:n_explained]),
                    })
    return {"rows": rows}


# --------------------------------------------------------------------------------------------
# 2-3. accuracy against the leak rate, and the heuristic
# --------------------------------------------------------------------------------------------
def _enso(seed: int):
    return datasets.enso_fields(n=2000, seed=seed, n_modes=20, noise=0.1)


def leak_sweep(dataset="two_squares", size=100, seeds=(0, 1, 2, 3, 4), bias=False,
               leak_rates=(0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 0.9),
               direction="left_to_right", keep=0.1) -> dict:
    """Test accuracy vs leak rate (paper's ESN), plus both heuristics and the accuracy at them."""
    rows = []
    real = datasets.enso_observed() if dataset == "enso" else None
    for seed in seeds:
        data = _squares(size, seed) if dataset == "two_squares" else _enso(seed)
        X_train, X_test = _sequences(data, direction)
        n_inputs, n_steps = X_train.shape[2], X_train.shape[1]
        base = paper_esn(n_inputs, 0.1, seed, bias=bias)
        rho = effective_radius(base, X_train[:100])
        suggested = {"leak_only": suggest_leak_rate(n_steps, keep),
                     "linearised": suggest_leak_rate(n_steps, keep, rho_eff=rho)}
        accuracies = {}
        for leak_rate in leak_rates:
            esn = base.with_leak_rate(leak_rate).fit(X_train, data.train.y)
            accuracies[str(leak_rate)] = {"test": esn.score(X_test, data.test.y), "train": esn.score(X_train, data.train.y)}
            if real is not None:  # the real labelled winters, never seen in training
                accuracies[str(leak_rate)]["real"] = esn.score(image_to_sequence(real.x, direction), real.y)
        at_suggested = {}
        for name, leak_rate in suggested.items():
            esn = base.with_leak_rate(leak_rate).fit(X_train, data.train.y)
            at_suggested[name] = esn.score(X_test, data.test.y)
        rows.append({"seed": seed, "rho_eff": rho, "rho_eff_no_data": effective_radius(base), "suggested": suggested,
                     "accuracy_at_suggested": at_suggested, "accuracy": accuracies, "n_steps": n_steps})
    return {"rows": rows, "leak_rates": list(leak_rates)}


# --------------------------------------------------------------------------------------------
# 4. L1 sweep over seeds
# --------------------------------------------------------------------------------------------
MLP_SPEC = {"architecture": "MLP", "input_shape": [1, 32, 32], "n_classes": 2, "hidden": [32, 16]}
CNN_SPEC = {"architecture": "CNN", "in_channels": 1, "n_classes": 2, "input_size": 32, "channels": [4, 8], "hidden": 16}


def _train_classifier(spec: dict, data, seed: int, l1: float = 0.0, epochs: int = 15):
    torch.manual_seed(seed)
    model = models.build(spec)
    train(model, data, epochs=epochs, l1=l1, seed=seed, progress=False)
    return model.eval()


def l1_sweep(l1s=(0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 2e-2, 3e-2, 1e-1), seeds=(0, 1, 2, 3, 4), composite="epsilon") -> dict:
    """Accuracy, sparsity and share of |R| on the informative square vs L1, MLP and CNN, 32x32."""
    from ..engine.explain import explain

    rows = []
    for seed in seeds:
        data = _squares(32, seed)
        for name, spec in (("MLP", MLP_SPEC), ("CNN", CNN_SPEC)):
            for l1 in l1s:
                model = _train_classifier(spec, data, seed, l1)
                relevance = explain(model, data.test.x, composite=composite).relevance
                rows.append({"seed": seed, "architecture": name, "l1": l1,
                             "accuracy": accuracy(model, data.test.x, data.test.y),
                             "sparsity": sparsity(model, 1e-3),
                             "share": informative_share(relevance[:, 0], data.informative_mask)})
    return {"rows": rows, "area": float(_squares(32, 0).informative_mask.float().mean())}


# --------------------------------------------------------------------------------------------
# 5. ENSO: EOF basis without the test winters
# --------------------------------------------------------------------------------------------
ENSO_MLP = {"architecture": "MLP", "input_shape": [1, 18, 30], "n_classes": 2, "hidden": [32, 16]}
ENSO_CNN = {"architecture": "CNN", "in_channels": 1, "n_classes": 2, "input_size": [18, 30], "channels": [8, 16], "hidden": 32}


def enso_leave_years_out(folds=5, seeds=(0, 1, 2, 3, 4), n=2000) -> dict:
    """Accuracy on real winters held out of the EOF basis (contiguous blocks of winters), and on
    the same winters when the basis saw them (the setting of notebook 06)."""
    from dataclasses import replace

    from ..data.enso import ENSO_THRESHOLD, preprocess_anomalies
    from ..data.sst import sst_anomalies

    sst = sst_anomalies()
    index = sst.nino34_index(standardize=True)  # labels as enso_observed: the full record's index
    labelled = np.abs(index) > ENSO_THRESHOLD
    blocks = np.array_split(np.arange(len(index)), folds)
    rows = []
    for seed in seeds:
        for fold, held_out in enumerate(blocks):
            in_fold = np.isin(np.arange(len(index)), held_out)
            test = in_fold & labelled
            if not test.any():
                continue
            y_test = torch.from_numpy((index[test] > ENSO_THRESHOLD).astype(np.int64))
            for basis in ("without_test_winters", "all_winters"):
                record = sst if basis == "all_winters" else replace(sst, values=sst.values[~in_fold], time=sst.time[~in_fold])
                fields = datasets.enso_fields(n=n, seed=seed, sst=record)
                # the test winters preprocessed with the scale of the record the basis came from
                x_test = torch.from_numpy(preprocess_anomalies(sst.values[test], sst.ocean, fields.scale)[:, None])
                for name, spec in (("MLP", ENSO_MLP), ("CNN", ENSO_CNN)):
                    model = _train_classifier(spec, fields, seed)
                    with torch.no_grad():
                        correct = int((model(x_test).argmax(1) == y_test).sum())
                    rows.append({"seed": seed, "fold": fold, "basis": basis, "model": name, "correct": correct,
                                 "n_test": int(len(y_test))})
                esn = paper_esn(18, 0.3, seed).fit(image_to_sequence(fields.train.x), fields.train.y)
                rows.append({"seed": seed, "fold": fold, "basis": basis, "model": "ESN",
                             "correct": int((esn.predict(image_to_sequence(x_test)) == y_test).sum()),
                             "n_test": int(len(y_test))})
    return {"rows": rows, "folds": folds}


# --------------------------------------------------------------------------------------------
# 6. ESN vs MLP / CNN explainability
# --------------------------------------------------------------------------------------------
class _SequenceModel(torch.nn.Module):
    """An ESN seen as an image classifier (columns = time steps), for removal curves."""

    def __init__(self, esn: ESN):
        super().__init__()
        self.esn = esn

    def forward(self, images):
        return self.esn(image_to_sequence(images))


def explainability(seeds=(0, 1, 2, 3, 4), datasets_=("two_squares", "enso"), n_explained=100, steps=16) -> dict:
    """Share of |R| on the informative region and removal AOPC (MoRF vs random, zero baseline,
    fraction of samples still correct) for MLP, CNN, ESN and ESN with 3 slices, same data."""
    from ..engine.explain import explain
    from ..removal import removal_curve

    rows = []
    for dataset in datasets_:
        for seed in seeds:
            data = _squares(32, seed) if dataset == "two_squares" else _enso(seed)
            mask = data.informative_mask if dataset == "two_squares" else data.nino34_mask
            x, y = data.test.x[:n_explained], data.test.y[:n_explained]
            specs = (("MLP", MLP_SPEC), ("CNN", CNN_SPEC)) if dataset == "two_squares" else (("MLP", ENSO_MLP), ("CNN", ENSO_CNN))
            results = {}
            for name, spec in specs:
                model = _train_classifier(spec, data, seed)
                results[name] = (model, explain(model, x, composite="epsilon").relevance, accuracy(model, data.test.x, data.test.y))
            X_train, _ = _sequences(data)
            n_steps = X_train.shape[1]
            for slices in (1, 3):
                base = paper_esn(X_train.shape[2], 0.1, seed, slices=slices)
                rho = effective_radius(base, X_train[:100])
                leak_rate = suggest_leak_rate(math.ceil(n_steps / slices), rho_eff=rho)
                esn = base.with_leak_rate(leak_rate).fit(X_train, data.train.y)
                relevance = explain_esn(esn, image_to_sequence(x)).relevance
                images = relevance.reshape(len(x), n_steps, 1, -1).permute(0, 2, 3, 1)  # (N, 1, H, W)
                wrapped = _SequenceModel(esn)
                results["ESN" if slices == 1 else f"ESN, {slices} slices"] = (
                    wrapped, images, esn.score(image_to_sequence(data.test.x), data.test.y))
            for name, (model, relevance, test_accuracy) in results.items():
                curves = {order: removal_curve(model, x, relevance, order=order, baseline="zero", steps=steps,
                                               score="probability", labels=y, seed=seed) for order in ("morf", "random")}
                drop = {order: float((curve.accuracy[0] - curve.accuracy).mean()) for order, curve in curves.items()}
                rows.append({"dataset": dataset, "seed": seed, "model": name, "accuracy": test_accuracy,
                             "share": informative_share(relevance[:, 0], mask),
                             "aopc_accuracy_morf": drop["morf"], "aopc_accuracy_random": drop["random"],
                             "aopc_probability_morf": curves["morf"].aopc, "aopc_probability_random": curves["random"].aopc})
    return {"rows": rows}


# --------------------------------------------------------------------------------------------
def composite_shares(n_models=5, max_seed=9, min_accuracy=0.9, n_samples=200) -> dict:
    """Share of positive relevance on the object's mask for every named composite, on MiniVGGs
    trained on shapes with seeds 0, 1, ... (seed 0 is the zoo model; a seed that does not train,
    test accuracy < ``min_accuracy``, is recorded without shares and skipped), pooled over the
    first ``n_samples`` test images of each seed's own data set. One row per seed tried."""
    from ..engine.explain import explain

    def measure(model, data, seed):
        x = data.test.x[:n_samples]
        masks = np.asarray(data.test.masks[:n_samples], dtype=bool)
        shares = {name: _object_share(explain(model, x, composite=name).relevance.sum(1).numpy(), masks) for name in CNN_COMPOSITES}
        return {"area": float(masks.mean()), "shares": shares}

    return {"rows": over_trained_seeds(trained_minivgg, measure, n_models, max_seed, min_accuracy)}


STUDIES: dict[str, Study] = {
    "esn_decay": Study(esn_decay, {}, "relevance decay and leaked share, epsilon vs z+, 32x32 two_squares, 5 seeds"),
    "esn_leak_paper": Study(leak_sweep, {"dataset": "two_squares", "size": 100},
                            "accuracy vs leak rate, paper's ESN on 100x100 two_squares, 5 seeds"),
    "esn_leak_paper_bias": Study(leak_sweep, {"dataset": "two_squares", "size": 100, "bias": True},
                                 "as esn_leak_paper with a reservoir bias in [-0.1, 0.1]"),
    "esn_leak_32": Study(leak_sweep, {"dataset": "two_squares", "size": 32}, "accuracy vs leak rate, 32x32 two_squares, 5 seeds"),
    "esn_leak_enso": Study(leak_sweep, {"dataset": "enso"}, "accuracy vs leak rate, synthetic ENSO fields west to east, 5 seeds"),
    "l1_sweep": Study(l1_sweep, {}, "accuracy / sparsity / focus vs L1 up to 0.1, MLP and CNN, 5 seeds"),
    "enso_leave_years_out": Study(enso_leave_years_out, {}, "real-winter accuracy with the EOF basis built without the test winters"),
    "explainability": Study(explainability, {}, "ESN vs MLP / CNN: share of |R| on the informative region and removal AOPC"),
    "rnn_comparison": Study(rnn_comparison, {}, "ESN vs LSTM vs GRU on column sequences: accuracy, parameters, training time, "
                            "informative share, removal AOPC, time decay; two squares both ways and ENSO, 5 seeds"),
    "composites_minivgg": Study(composite_shares, {}, "share of positive relevance on the object per composite, "
                                "5 MiniVGGs trained on shapes (notebook 02)"),
    "vit_removal": Study(vit_removal, {}, "removal AOPC over patches of AttnLRP, CP-LRP, gradient x input, attention "
                         "rollout and random, 3 ViTs trained on shapes (notebook 11)"),
}


def run_study(name: str, results_dir: Path | str = RESULTS_DIR, threads: int | None = 1) -> dict:
    """Compute study ``name`` and write ``results/<name>.json``; returns the document."""
    if name not in STUDIES:
        raise KeyError(f"no study named {name!r}; known: {', '.join(STUDIES)}")
    study = STUDIES[name]
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        results = study.function(**study.settings)
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    document = {"study": name, "description": study.description, "settings": study.settings,
                "torch": torch.__version__, "seconds": round(seconds, 1), "results": results}
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(document, indent=None, separators=(",", ":")) + "\n")
    return document


def load_study(name: str, results_dir: Path | str = RESULTS_DIR) -> dict:
    """The cached results of study ``name`` (see :data:`STUDIES`), with the command to rebuild them."""
    path = Path(results_dir) / f"{name}.json"
    if not path.is_file():
        if name in STUDIES:
            raise FileNotFoundError(f"study {name!r} has not been run; run `python -m lrp_widgets.zoo study {name}`")
        raise KeyError(f"no study named {name!r}; known: {', '.join(STUDIES)}")
    return json.loads(path.read_text())
