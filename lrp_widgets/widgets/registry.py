"""The one table of explorers: name -> class, and how to build one from what a user typed.

The magics (``%lrp_explore``) and the command line (``lrp-widgets gallery``) both look explorers
up here, so a new explorer is added in one place (its module in ``widgets/__init__.py``'s list
and, if it takes more than a model and data, a line here).
"""
from __future__ import annotations

import importlib
import types as _types
from dataclasses import dataclass, field

from . import _EXPLORERS

__all__ = ["ExplorerEntry", "EXPLORERS", "lookup", "explorer_names"]


@dataclass(frozen=True)
class ExplorerEntry:
    """One explorer: its class, and which user inputs its constructor accepts.

    Attributes
    ----------
    name : str
        Short name (``"leak_rate"``), as typed after ``%lrp_explore``.
    class_name : str
        The class in :mod:`lrp_widgets.widgets` (``"LeakRateExplorer"``).
    data_names : tuple of str
        Bundled data sets the constructor takes by name (``%lrp_explore leak_rate enso``).
    """

    name: str
    class_name: str
    data_names: tuple = field(default=())

    @property
    def module(self) -> str:
        """The explorer's module, ``lrp_widgets.widgets.<module>``."""
        return f"{__package__}.{_EXPLORERS[self.class_name]}"

    def load(self):
        """The explorer class (its module is imported now)."""
        return getattr(importlib.import_module(self.module), self.class_name)

    def is_data_name(self, word: str) -> bool:
        """Whether ``word`` names a bundled data set this explorer takes by name."""
        return word in self.data_names

    def data(self, value):
        """A user's data as the constructor takes it: a name it knows, a data set with ``.x``
        (and ``.y``), or a tensor / array of inputs, wrapped as a data set with ``.x``."""
        if isinstance(value, str) or hasattr(value, "x"):
            return value
        import numpy as np
        import torch

        if isinstance(value, (torch.Tensor, np.ndarray)):
            return _types.SimpleNamespace(x=torch.as_tensor(value), y=None)
        return value


def _short(class_name: str) -> str:
    base = class_name[: -len("Explorer")] if class_name.endswith("Explorer") else class_name
    return "".join("_" + c.lower() if c.isupper() and i and not base[i - 1].isupper() else c.lower() for i, c in enumerate(base))


#: Data sets an explorer takes by name (the rest take a model and its data).
_DATA_NAMES = {"LeakRateExplorer": ("two_squares", "enso")}

#: short name -> entry, in the order of ``lrp_widgets.widgets``.
EXPLORERS = {
    _short(class_name): ExplorerEntry(_short(class_name), class_name, _DATA_NAMES.get(class_name, ()))
    for class_name in _EXPLORERS
}
_ALIASES = {"paths": "path", "leak": "leak_rate", "rules": "rule"}


def explorer_names() -> str:
    """``rule (RuleExplorer), l1 (L1Explorer), ...`` for messages."""
    return ", ".join(f"{entry.name} ({entry.class_name})" for entry in EXPLORERS.values())


def lookup(name: str) -> ExplorerEntry:
    """The entry for a case-insensitive name: ``rule``, ``RuleExplorer``, ``leak_rate``, ``LeakRate``...

    Raises KeyError naming the choices.
    """
    key = name.lower().replace("-", "_")
    if key.endswith("explorer") and key != "explorer":
        key = key[: -len("explorer")].rstrip("_")
    key = _ALIASES.get(key, key)
    by_plain = {entry.name.replace("_", ""): entry for entry in EXPLORERS.values()}
    entry = EXPLORERS.get(key) or by_plain.get(key.replace("_", ""))
    if entry is None:
        raise KeyError(f"unknown explorer {name!r}; choose one of: {explorer_names()}")
    return entry
