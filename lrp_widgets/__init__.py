"""lrp_widgets: Layer-wise Relevance Propagation you can play with in Jupyter.

The public API lives here. Every name is imported on first use (``lrp_widgets.explain`` imports
the engine, and torch, then), so that ``import lrp_widgets`` and the ``lrp-widgets`` command
start fast and the engine never pulls in widget or plotting code. The first such name also imports
:mod:`lrp_widgets.display`, which fills the results' display registry (engine/results.py) so that
results show pictures in notebooks; it loads matplotlib only when the first picture is drawn.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it; imported lazily on first attribute access.
_LAZY = {
    # the engine
    "explain": "engine.explain",
    "Explanation": "engine.explain",
    "Composite": "engine.composites",
    "Sum": "engine.layers",
    "LRPError": "engine.errors",
    "UnsupportedModuleError": "engine.errors",
    "FunctionalCallError": "engine.errors",
    "InputError": "engine.errors",
    "LRPWarning": "engine.errors",
    "register_composite": "engine.composites",
    # echo state networks
    "ESN": "esn",
    "ESNExplanation": "esn",
    "explain_esn": "esn",
    "image_to_sequence": "esn",
    "suggest_leak_rate": "esn",
    "effective_radius": "esn",
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
#: ``lrp_widgets.rules`` and ``lrp_widgets.composites`` are the engine's own modules (see rules.py)
_ALIASES = {"rules": "engine.rules", "composites": "engine.composites"}
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
    "LRPWarning",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        importlib.import_module(".display", __name__)  # registers the results' pictures
        return getattr(module, name)
    if name in _ALIASES:
        return importlib.import_module(f".{_ALIASES[name]}", __name__)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lrp_widgets' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_ALIASES) | _SUBMODULES)


def load_ipython_extension(ipython):
    """``%load_ext lrp_widgets``: registers ``%lrp_explain`` and ``%lrp_explore``."""
    from .magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython):
    """``%unload_ext lrp_widgets``."""
    from .magics import unload_ipython_extension as _unload

    _unload(ipython)
