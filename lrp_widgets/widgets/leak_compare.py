"""The LeakRateExplorer's comparison: the zoo's LSTM or GRU, trained on the same two squares.

The decay panel can overlay the time profile of a gated recurrent network next to the ESN's. The
zoo ships ``two_squares_lstm`` and ``two_squares_gru`` (16 units, 32x32 two squares, fed left to
right); they are explained on the explorer's shown test images with the same LRP (epsilon on
the linear maps, signal-take-all through the gates), and their profile is measured the same way
(mean |relevance| per image column, scaled to a maximum of 1). Data of another kind or size has
no such model: the control is then disabled and says why.
"""
from __future__ import annotations

import numpy as np
import torch

from ..engine.explain import explain
from ..esn import measure_decay_rate

__all__ = ["COMPARE", "ZOO_MODELS", "ZooComparison", "comparison_note"]

#: the ``compare`` control's options and the zoo model behind each
COMPARE = ("none", "lstm", "gru")
ZOO_MODELS = {"lstm": "two_squares_lstm", "gru": "two_squares_gru"}


def comparison_note(data, shape) -> str | None:
    """None when the zoo's recurrent models fit ``data`` (two squares at their size), else why not."""
    from .. import zoo

    recipe = zoo.info(ZOO_MODELS["lstm"])
    spec = getattr(data, "spec", None) or {}
    size = recipe["dataset"]["size"]
    if spec.get("loader") != "two_squares" or tuple(shape) != (1, size, size):
        return (f"compare needs {size}x{size} two squares (the data of the zoo's LSTM and GRU); "
                f"this data is {spec.get('loader', 'user data')} of shape {tuple(shape)}")
    return None


class ZooComparison:
    """The zoo LSTM/GRU measured on the explorer's images (each model loaded and explained once)."""

    def __init__(self, shown, test_x, test_y):
        self.shown, self.test_x, self.test_y = shown, test_x, test_y
        self.results: dict = {}

    def direction(self, choice: str) -> str:
        from .. import zoo

        return zoo.info(ZOO_MODELS[choice])["architecture"].get("direction", "left_to_right")

    def measure(self, choice: str) -> dict:
        """``column_profile`` (per image column, max 1), ``decay_rate``, ``accuracy``, ``direction``."""
        if choice not in self.results:
            from .. import zoo

            model = zoo.load(ZOO_MODELS[choice])
            result = explain(model, self.shown, composite="epsilon")
            columns = result.relevance.sum(1).abs().sum(1).mean(0).numpy()  # mean |relevance| per image column
            with torch.no_grad():
                correct = (model(self.test_x).argmax(1) == self.test_y).double().mean().item()
            self.results[choice] = {
                "column_profile": columns / max(float(columns.max()), 1e-30),
                "decay_rate": measure_decay_rate(result.recurrent["rnn"].time_profile),
                "accuracy": correct,
                "direction": self.direction(choice),
            }
        return self.results[choice]

    def profile(self, choice: str, direction: str):
        """(profile or None, note): None when nothing is compared or the feeding directions differ."""
        if choice == "none":
            return None, ""
        fit = self.measure(choice)
        name = f"{choice.upper()} (zoo, fed {fit['direction'].replace('_', ' ')})"
        if fit["direction"] != direction:
            return None, f"{name}: not drawn, the explorer feeds {direction.replace('_', ' ')}"
        return np.asarray(fit["column_profile"]), (f"{name}: test accuracy {fit['accuracy']:.1%}, "
                                                   f"decay/step {fit['decay_rate']:.3g}")
