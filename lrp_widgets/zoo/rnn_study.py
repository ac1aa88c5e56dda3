"""The ``rnn_comparison`` study: echo state network vs LSTM vs GRU on the same column sequences.

The fact-or-artifact paper asks how ESNs compare with LSTMs in accuracy and explainability. Per
seed, data set and feeding direction this trains the three models on the same images read column
by column and measures, on the same test images: accuracy, trainable parameters, training time
(one torch thread), the share of |relevance| on the informative region, removal AOPC (most
relevant first vs random, zero baseline) and the per-step time profile with its fitted decay rate
(:func:`lrp_widgets.esn.measure_decay_rate`). All three are explained with epsilon on the linear
maps (gates: signal-take-all for LSTM/GRU, REFERENCE.md section 6).
"""
from __future__ import annotations

import time

import torch

from .. import data as datasets
from .. import models
from ..engine.explain import explain
from ..esn import effective_radius, explain_esn, image_to_sequence, measure_decay_rate, sequence_to_image, suggest_leak_rate
from ..removal import removal_curve
from ..train import accuracy, train

__all__ = ["rnn_comparison", "compare_one", "load_case", "ColumnESN", "CASES", "RNN_TRAINING"]

#: (data set, feeding direction): two squares both ways (left to right the informative square
#: enters ~22 of 32 steps before the readout), ENSO fields west to east.
CASES = (("two_squares", "left_to_right"), ("two_squares", "right_to_left"), ("enso", "left_to_right"))
#: the zoo recipes' training (two_squares_lstm / _gru): 16 units, Adam lr 3e-3, 40 epochs, batch 32
RNN_TRAINING = {"hidden": 16, "epochs": 40, "lr": 3e-3}


class ColumnESN(torch.nn.Module):
    """A fitted ESN seen as an image classifier (columns = time steps), for removal curves."""

    def __init__(self, esn, direction: str = "left_to_right"):
        super().__init__()
        self.esn, self.direction = esn, direction

    def forward(self, images):
        return self.esn(image_to_sequence(images, self.direction))


def _profile(time_profile) -> list:
    """Mean |relevance| per time step (feeding order), scaled to a maximum of 1, 4 digits."""
    magnitude = time_profile.abs().mean(0)
    return [float(f"{v:.4g}") for v in (magnitude / magnitude.max().clamp_min(1e-30)).tolist()]


def _esn(data, direction, seed, x):
    from .studies import paper_esn

    X_train, X_test = (image_to_sequence(part.x, direction) for part in (data.train, data.test))
    n_steps, n_inputs = X_train.shape[1:]
    base = paper_esn(n_inputs, 0.1, seed)
    # the leak rate from the linearised reservoir's memory (notebook 04 validates it)
    leak_rate = suggest_leak_rate(n_steps, rho_eff=effective_radius(base, X_train[:100]))
    start = time.perf_counter()
    esn = base.with_leak_rate(leak_rate).fit(X_train, data.train.y)
    seconds = time.perf_counter() - start
    explanation = explain_esn(esn, image_to_sequence(x, direction))
    images = sequence_to_image(explanation.relevance, x.shape[1], direction)
    return {"model": ColumnESN(esn, direction), "relevance": images, "time_profile": explanation.time_profile,
            "accuracy": esn.score(X_test, data.test.y), "train_accuracy": esn.score(X_train, data.train.y),
            "n_parameters": esn.readout_weight.numel() + esn.readout_bias.numel(), "train_seconds": seconds,
            "leak_rate": leak_rate}


def _rnn(cell, data, direction, seed, x, hidden, epochs, lr):
    torch.manual_seed(seed)  # initial weights
    model = models.ColumnRNN(cell, tuple(data.train.x.shape[1:]), n_classes=2, hidden=hidden, direction=direction)
    start = time.perf_counter()
    train(model, data, epochs=epochs, lr=lr, seed=seed, progress=False)
    seconds = time.perf_counter() - start
    result = explain(model, x, composite="epsilon")
    return {"model": model, "relevance": result.relevance, "time_profile": result.recurrent["rnn"].time_profile,
            "accuracy": accuracy(model, data.test.x, data.test.y), "train_accuracy": accuracy(model, data.train.x, data.train.y),
            "n_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad), "train_seconds": seconds}


def load_case(dataset: str, seed: int, size: int = 32, enso_n: int = 2000):
    """The data set of a case and its informative region (two squares: the left square; ENSO: Nino 3.4)."""
    if dataset == "two_squares":
        data = datasets.two_squares(n_per_class=250, size=size, noise=0.1, seed=seed)
        return data, data.informative_mask
    if dataset == "enso":
        data = datasets.enso_fields(n=enso_n, seed=seed, n_modes=20, noise=0.1)
        return data, data.nino34_mask
    raise ValueError(f"unknown data set {dataset!r}: use 'two_squares' or 'enso'")


def compare_one(dataset: str, direction: str, seed: int, size: int = 32, enso_n: int = 2000, n_explained: int = 100,
                steps: int = 16, hidden: int = 16, epochs: int = 40, lr: float = 3e-3, cells=("ESN", "LSTM", "GRU")) -> list:
    """The rows of one (data set, direction, seed): one per model in ``cells``."""
    from .studies import informative_share

    data, mask = load_case(dataset, seed, size, enso_n)
    x, y = data.test.x[:n_explained], data.test.y[:n_explained]
    rows = []
    for cell in cells:
        fit = _esn(data, direction, seed, x) if cell == "ESN" else _rnn(cell, data, direction, seed, x, hidden, epochs, lr)
        curves = {order: removal_curve(fit["model"], x, relevance=fit["relevance"], order=order, baseline="zero", steps=steps,
                                       score="probability", labels=y, seed=seed) for order in ("morf", "random")}
        rows.append({
            "dataset": dataset, "direction": direction, "seed": seed, "model": cell,
            "accuracy": fit["accuracy"], "train_accuracy": fit["train_accuracy"],
            "n_parameters": int(fit["n_parameters"]), "train_seconds": round(fit["train_seconds"], 3),
            "share": informative_share(fit["relevance"][:, 0], mask),
            "aopc_probability_morf": curves["morf"].aopc, "aopc_probability_random": curves["random"].aopc,
            "aopc_accuracy_morf": float((curves["morf"].accuracy[0] - curves["morf"].accuracy).mean()),
            "aopc_accuracy_random": float((curves["random"].accuracy[0] - curves["random"].accuracy).mean()),
            "decay_rate": measure_decay_rate(fit["time_profile"]),
            "profile": _profile(fit["time_profile"]),
            **({"leak_rate": fit["leak_rate"]} if "leak_rate" in fit else {}),
        })
    return rows


def rnn_comparison(seeds=(0, 1, 2, 3, 4), cases=CASES, size=32, enso_n=2000, n_explained=100, steps=16, **training) -> dict:
    """ESN vs LSTM vs GRU: accuracy, parameters, training time, informative share, AOPC, decay.

    A seed seeds the data draw, the reservoir, and the LSTM/GRU initial weights and batch order.
    """
    settings = {**RNN_TRAINING, **training}
    rows = []
    for dataset, direction in cases:
        for seed in seeds:
            rows += compare_one(dataset, direction, seed, size=size, enso_n=enso_n, n_explained=n_explained, steps=steps, **settings)
    area = {dataset: float(load_case(dataset, 0, size, enso_n)[1].float().mean()) for dataset in {d for d, _ in cases}}
    return {"rows": rows, "training": settings, "area": area}
