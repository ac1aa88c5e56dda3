"""lrp_widgets: Layer-wise Relevance Propagation you can play with in Jupyter.

The public API lives here. The engine (``explain``, ``rules``, ``composites``) and
``display`` (which registers the results' pictures; it loads matplotlib only when the first picture
is drawn) are imported eagerly; everything else is imported on first use so that
``import lrp_widgets`` stays fast. The engine itself never imports display, plotting or widget code.
"""
from __future__ import annotations

import importlib
import sys

from .engine import composites, rules
from .engine.explain import Explanation, explain
from .engine.composites import Composite
from .engine.layers import Sum
from .engine.errors import LRPError, UnsupportedModuleError, FunctionalCallError, InputError
from .engine.composites import register_composite

# ``from lrp_widgets.rules import Epsilon`` works as well as ``lrp_widgets.rules.Epsilon``.
sys.modules[__name__ + ".rules"] = rules
sys.modules[__name__ + ".composites"] = composites

__version__ = "0.1.0"

# name -> module that defines it; imported lazily on first attribute access.
_LAZY = {
    # echo state networks
    "ESN": "esn",
    "ESNExplanation": "esn",
    "explain_esn": "esn",
    "image_to_sequence": "esn",
    "suggest_leak_rate": "esn",
    # removal curves
    "removal_curve": "removal",
    "RemovalCurve": "removal",
    "removal_experiment": "removal",
    "prune_inputs": "removal",
    # neuron selection and paths
    "select_neurons": "paths",
    "top_paths": "paths",
    "path_heatmap": "paths",
    "activation_heatmap": "paths",
    "deconvolve": "paths",
    "path_fidelity": "paths",
}
_SUBMODULES = {
    "data", "models", "train", "zoo", "esn", "removal", "paths", "plotting", "widgets", "cli", "engine",
    "display", "magics",
}

__all__ = [
    "explain",
    "Explanation",
    "rules",
    "composites",
    "Composite",
    "Sum",
    "LRPError",
    "UnsupportedModuleError",
    "FunctionalCallError",
    "InputError",
    "register_composite",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lrp_widgets' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


# Fills the results' display registry (engine/results.py): pictures in notebooks.
from . import display as _display  # noqa: E402,F401


def load_ipython_extension(ipython):
    """``%load_ext lrp_widgets``: registers ``%lrp_explain`` and ``%lrp_explore``."""
    from .magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython):
    """``%unload_ext lrp_widgets``."""
    from .magics import unload_ipython_extension as _unload

    _unload(ipython)
