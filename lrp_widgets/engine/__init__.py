"""The LRP engine: rules, composites, BatchNorm folding, the propagation mechanism and ``explain``.

The engine depends on torch and numpy only; it never imports plotting or widget code.
"""
from . import composites, rules
from .composites import Composite
from .explain import ConservationTable, Explanation, explain
from .layers import Sum

__all__ = ["composites", "rules", "Composite", "Explanation", "ConservationTable", "explain", "Sum"]
