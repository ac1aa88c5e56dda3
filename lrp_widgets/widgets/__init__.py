"""Interactive explorers: controls + a typed state + panels (small pictures in ipywidgets).
Each is built with no arguments on shipped weights and bundled data, and also takes the user's
own model and data.

Explorers are imported lazily so that importing this package stays light.
"""
from __future__ import annotations

import importlib

from .base import Explorer

_EXPLORERS = {
    "RuleExplorer": "rule",
    "L1Explorer": "l1",
    "LeakRateExplorer": "leak_rate",
    "RemovalExplorer": "removal",
    "PathExplorer": "path",
    "AttentionExplorer": "attention",
}

__all__ = ["Explorer", *_EXPLORERS]


def __getattr__(name: str):
    if name in _EXPLORERS:
        return getattr(importlib.import_module(f".{_EXPLORERS[name]}", __name__), name)
    raise AttributeError(f"module 'lrp_widgets.widgets' has no attribute {name!r}")
