"""The result protocol every result of the package follows, and the registry rich display uses.

A result has ``.relevance`` (input-shaped where it is a map), ``.target``, ``.output``,
``.summary()`` (a few lines of text) and ``.to_dict()``. In a notebook it shows as a picture with
its summary as the text fallback: pictures are drawn by ``lrp_widgets.display``, which registers
a drawing function per result class here (:func:`register_display`). The engine never imports
drawing code; without a registered picture a result shows its summary.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["ConservationTable", "Result", "register_display", "display_function", "listed", "plural"]

#: result class -> function(result) -> PNG bytes; filled by lrp_widgets.display.
DISPLAYS: dict = {}
#: How many values a text summary lists before "...".
MAX_LISTED = 6


def register_display(cls: type, to_png) -> None:
    """Show instances of ``cls`` (and its subclasses) as the picture ``to_png(result)`` returns."""
    DISPLAYS[cls] = to_png


def display_function(result):
    """The registered picture function for ``result``'s class (nearest along its MRO), or None."""
    for klass in type(result).__mro__:
        if klass in DISPLAYS:
            return DISPLAYS[klass]
    return None


def listed(values, fmt="{:.4g}") -> str:
    """``3`` for one value, ``[3, 1, 7]`` for a few, ``[3, 1, ..., 0]`` style for many."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    values = list(np.asarray(values).reshape(-1))
    texts = [fmt.format(v) for v in values[:MAX_LISTED]]
    if len(values) == 1:
        return texts[0]
    return "[" + ", ".join(texts) + (", ...]" if len(values) > MAX_LISTED else "]")


def plural(n: int, word: str) -> str:
    """``1 sample``, ``2 samples``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


class Result:
    """Base of every result: the summary as text, a picture where display registered one."""

    def summary(self) -> str:
        """A few lines of text: what was explained, the output, conservation."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        """The result's numbers as a plain dict."""
        raise NotImplementedError

    def as_dict(self) -> dict:
        """Deprecated alias of :meth:`to_dict`."""
        warnings.warn(f"{type(self).__name__}.as_dict() is deprecated; use .to_dict()", DeprecationWarning, stacklevel=2)
        return self.to_dict()

    def _repr_mimebundle_(self, include=None, exclude=None):
        """IPython's display protocol: only the requested types are built (a picture costs time).

        No ``text/html``: front ends would show it instead of the picture.
        """

        def wanted(mime):
            return (not include or mime in include) and (not exclude or mime not in exclude)

        bundle = {}
        to_png = display_function(self)
        if to_png is not None and wanted("image/png"):
            bundle["image/png"] = to_png(self)
        if wanted("text/plain"):
            bundle["text/plain"] = self.summary()
        return bundle

    def _repr_png_(self):
        to_png = display_function(self)
        return None if to_png is None else to_png(self)


@dataclass
class ConservationTable:
    """Relevance sum per sample at each stage, from the explained output down to the input.

    ``names[i]`` is a stage ("output", then each layer's input, then "input"), ``sums[i, n]`` the
    relevance sum of sample ``n`` there. Where a stage's sum differs from the output's, bias and
    stabilizers absorbed (or injected) relevance. Every result's ``conservation()`` returns this
    table: :func:`~lrp_widgets.explain` records each layer; the ESN and the recurrent stages record
    the output and the input, and ``leaked`` (what biases and stabilizers kept), so that
    :meth:`residual` checks the bookkeeping.
    """

    names: list
    sums: np.ndarray
    #: (N,) relevance absorbed on the way where a result tracks it (biases, stabilizers); else None
    leaked: np.ndarray | None = None

    def __len__(self):
        return len(self.names)

    def to_dict(self) -> dict:
        """``{stage: per-sample sums}``, plus ``leaked`` where tracked."""
        stages = {name: self.sums[i] for i, name in enumerate(self.names)}
        return stages if self.leaked is None else {**stages, "leaked": self.leaked}

    def residual(self) -> np.ndarray:
        """(N,) ``last stage + leaked - first stage``: zero up to rounding when ``leaked`` is tracked."""
        if self.leaked is None:
            raise ValueError("this table does not track leaked relevance; compare stages with ratio()")
        return self.sums[-1] + self.leaked - self.sums[0]

    def ratio(self) -> np.ndarray:
        """Each stage's sum divided by the output's (1 means conserved)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.sums / self.sums[0]

    def _columns(self, limit=4):
        n = self.sums.shape[1]
        shown = min(n, limit)
        return shown, [f"sample {i}" for i in range(shown)] + (["..."] if n > shown else [])

    def __repr__(self):
        shown, headers = self._columns()
        width = max(len(n) for n in self.names) + 2
        lines = ["relevance sum per sample".ljust(width) + "".join(h.rjust(13) for h in headers)]
        for i, name in enumerate(self.names):
            cells = "".join(f"{v:13.5g}" for v in self.sums[i, :shown])
            lines.append(name.ljust(width) + cells + ("          ..." if self.sums.shape[1] > shown else ""))
        return "\n".join(lines)

    def _repr_html_(self):
        shown, headers = self._columns()
        head = "".join(f"<th>{h}</th>" for h in headers)
        rows = "".join(
            f"<tr><td>{name}</td>" + "".join(f"<td>{v:.5g}</td>" for v in self.sums[i, :shown]) + "</tr>"
            for i, name in enumerate(self.names)
        )
        return f"<table><thead><tr><th>stage</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
