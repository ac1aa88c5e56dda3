"""IPython magics: ``%load_ext lrp_widgets`` registers ``%lrp_explain`` and ``%lrp_explore``.

``%lrp_explain MODEL X [--composite NAME] [--target T]``
    Explains ``X`` with ``MODEL`` and returns the :class:`~lrp_widgets.Explanation` (an
    :class:`~lrp_widgets.esn.ESNExplanation` for an ESN). Ending a cell, it is shown as a heatmap
    with a summary (target, output, conservation); ``result = %lrp_explain ...`` keeps it instead.

``%lrp_explore EXPLORER [MODEL [DATA]] [name=value ...]``
    Returns the explorer (``rule``, ``l1``, ``leak_rate``, ``removal``, ``path``; case-insensitive,
    ``RuleExplorer`` works too) built on the given objects, or on its shipped default without
    any. ``name=value`` pairs are further constructor arguments (``n_samples=16``). DATA is a data
    set with ``.x`` (and ``.y``), a tensor or array of inputs, or a bundled data set's name where
    the explorer takes one (``%lrp_explore leak_rate enso``). Explorers are looked up in
    ``lrp_widgets.widgets.registry``, the table the command line uses too.

Every argument (``MODEL``, ``X``, ``DATA``, ``T``, values of ``name=value``) is a name or a Python
expression evaluated in the notebook's namespace, so ``data.x[:4]``, ``x[0:4, :]`` or ``[3, 1]``
work: arguments are separated by spaces outside brackets and strings; write ``(a + b)`` for an
expression with spaces at its top level. ``NAME`` is a composite name (``epsilon``,
``epsilon_plus_flat``, ...) or a Composite in the namespace.
A missing name or an object of the wrong kind stops with a ``UsageError`` that says what to pass.

Examples
--------
In a notebook::

    %load_ext lrp_widgets
    %lrp_explain model test.x[:4] --composite epsilon --target 3
    %lrp_explore rule model test
"""
from __future__ import annotations

import inspect
import re

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from .esn import ESN
from .widgets import registry as _registry

__all__ = ["LRPMagics", "EXPLORERS", "split_arguments", "load_ipython_extension", "unload_ipython_extension"]

#: Short name -> explorer class name (from the one explorer registry, ``widgets/registry.py``).
EXPLORERS = {name: entry.class_name for name, entry in _registry.EXPLORERS.items()}
_KEYWORD = re.compile(r"^([A-Za-z_]\w*)=(?!=)(.+)$", re.S)


def split_arguments(line: str) -> list:
    """Split a magic's line at spaces outside brackets and string literals.

    >>> split_arguments('rule model x[0:4, :] n_samples=16 title="a b"')
    ['rule', 'model', 'x[0:4, :]', 'n_samples=16', 'title="a b"']
    """
    words, current, depth, quote = [], [], 0, None
    characters = iter(line)
    for character in characters:
        if quote:
            current.append(character)
            if character == "\\":
                current.append(next(characters, ""))
            elif character == quote:
                quote = None
        elif character in "'\"":
            quote = character
            current.append(character)
        elif character.isspace() and depth == 0:
            if current:
                words.append("".join(current))
                current = []
        else:
            depth += (character in "([{") - (character in ")]}")
            current.append(character)
    if quote or depth:
        raise UsageError(f"unbalanced {'quotes' if quote else 'brackets'} in {line!r}")
    if current:
        words.append("".join(current))
    return words


def explorer_class(name: str):
    """The explorer class for a case-insensitive name: ``rule``, ``RuleExplorer``, ``leak_rate``..."""
    try:
        entry = _registry.lookup(name)
    except KeyError as error:
        raise UsageError(error.args[0]) from None
    try:
        return entry.load()
    except (ImportError, AttributeError) as error:
        raise UsageError(f"{entry.class_name} is not available in this installation of lrp_widgets ({error})") from None


def _kind(value) -> str:
    """``a Tensor``, ``a Sequential``, ``str 'text'``: what the user passed, in words."""
    if isinstance(value, (bool, int, float, str)):
        return f"{type(value).__name__} {value!r}"
    return f"a {type(value).__name__}"


def _is_esn(model) -> bool:
    return isinstance(model, ESN)


@magics_class
class LRPMagics(Magics):
    """``%lrp_explain`` and ``%lrp_explore`` (see the module docstring)."""

    # -- helpers ---------------------------------------------------------------------------------
    def evaluate(self, expression: str, what: str):
        """``expression`` evaluated in the user's namespace, or a UsageError that says what to fix."""
        try:
            return self.shell.ev(expression)
        except NameError as error:
            raise UsageError(
                f"{what} {expression!r}: {error}. Define it in the notebook first (or check the spelling); "
                "names and expressions are evaluated in the notebook's namespace."
            ) from None
        except SyntaxError:
            raise UsageError(
                f"{what} {expression!r} is not a name or a Python expression; put quotes around an expression "
                'with spaces, e.g. "x[0:4, :]"'
            ) from None
        except Exception as error:  # noqa: BLE001 - the user's expression failed: say which and why
            raise UsageError(f"could not evaluate {what} {expression!r}: {type(error).__name__}: {error}") from None

    # -- %lrp_explain ----------------------------------------------------------------------------
    @magic_arguments()
    @argument("model", help="name (or expression) of a torch.nn.Module in the notebook, or an lrp_widgets ESN")
    @argument("x", help="the inputs: a name or expression giving a tensor or array (N, ...), e.g. data.x[:4]")
    @argument("--composite", "-c", default=None,
              help="a composite name (chosen by the model by default: epsilon_plus_flat for a convolutional first layer, else epsilon_plus; epsilon, lrp0, ...) or a Composite in the notebook")
    @argument("--target", "-t", default=None,
              help="class to explain: an int, a list, or an expression (default: the predicted class)")
    @line_magic
    def lrp_explain(self, line):
        """Explain the inputs X with MODEL; returns the Explanation (shown when it ends a cell).

        Usage: ``%lrp_explain MODEL X [--composite NAME] [--target T]``
        """
        args = self.lrp_explain.parser.parse_args(split_arguments(line))
        import torch

        import lrp_widgets

        model = self.evaluate(args.model, "MODEL")
        if not isinstance(model, torch.nn.Module):
            raise UsageError(
                f"MODEL {args.model!r} is {_kind(model)}, not a torch.nn.Module. Usage: %lrp_explain MODEL X "
                "(the model first, then its inputs)"
            )
        x = self.evaluate(args.x, "X")
        self._check_inputs(args.x, x)
        target = None if args.target is None else self.evaluate(args.target, "--target")
        try:
            if _is_esn(model):
                if args.composite is not None:
                    raise UsageError("an ESN is explained with the epsilon rule through time; drop --composite")
                from .esn import explain_esn

                try:
                    return explain_esn(model, x, target=target)
                except RuntimeError as error:  # "this ESN has no readout yet: call esn.fit(X, y) first"
                    raise UsageError(f"lrp_explain: {error}") from None
            composite = self._composite(args.composite)
            return lrp_widgets.explain(model, x, target=target, composite=composite)
        except (lrp_widgets.LRPError, ValueError, TypeError) as error:
            # the engine's errors name the fix; a UsageError shows them without a traceback
            raise UsageError(f"lrp_explain: {error}") from None

    def _check_inputs(self, expression, x):
        import numpy as np
        import torch

        if isinstance(x, (torch.Tensor, np.ndarray)):
            return
        if hasattr(x, "x") and isinstance(getattr(x, "x"), torch.Tensor):
            raise UsageError(f"X {expression!r} is a data set; pass its inputs, e.g. {expression}.x[:4]")
        if isinstance(x, torch.nn.Module):
            raise UsageError(f"X {expression!r} is a model; usage: %lrp_explain MODEL X (the model first, then its inputs)")
        raise UsageError(f"X {expression!r} is {_kind(x)}; pass a tensor or an array of inputs (N, ...), e.g. data.x[:4]")

    def _composite(self, name):
        from .engine import composites

        if name is None:
            return None  # explain chooses by the model (composites.default_for)
        if name in composites.NAMES:
            return name
        if name.isidentifier() and name not in self.shell.user_ns:
            raise UsageError(f"unknown composite {name!r}; use one of {', '.join(sorted(composites.NAMES))} or a Composite in the notebook")
        value = self.evaluate(name, "--composite")
        if isinstance(value, composites.Composite) or callable(value):
            return value
        raise UsageError(f"--composite {name!r} is {_kind(value)}; use one of {', '.join(sorted(composites.NAMES))} or a Composite")

    # -- %lrp_explore ----------------------------------------------------------------------------
    @line_magic
    def lrp_explore(self, line):
        """Open an explorer on your objects; returns the widget (shown when it ends a cell).

        Usage: ``%lrp_explore EXPLORER [MODEL [DATA]] [name=value ...]``

        EXPLORER is ``rule``, ``l1``, ``leak_rate``, ``removal`` or ``path`` (or the class name,
        case-insensitive). The other arguments are names or expressions in the notebook's namespace,
        passed to the explorer in the order of its constructor (see ``help(lrp_widgets.widgets.RuleExplorer)``).
        Without them the explorer opens on its shipped model and data.

        Examples: ``%lrp_explore rule``, ``%lrp_explore rule model test``,
        ``%lrp_explore l1 {"MLP": sweep} test n_samples=100``.
        """
        words = split_arguments(line)
        if not words:
            raise UsageError("usage: %lrp_explore EXPLORER [MODEL [DATA]] [name=value ...]; EXPLORER is one of "
                             + ", ".join(EXPLORERS))
        cls = explorer_class(words[0])
        entry = _registry.lookup(words[0])
        parameters = [
            p for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
        names = [p.name for p in parameters]
        # keyword-only parameters (score=, progress=, ...) are name=value arguments too
        keyword_names = names + [p.name for p in inspect.signature(cls.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY]
        positional, keywords = [], {}
        for word in words[1:]:
            match = _KEYWORD.match(word)
            if match:
                key = match.group(1)
                if key not in keyword_names and not accepts_any:
                    raise UsageError(f"{cls.__name__} has no argument {key!r}; its arguments: {', '.join(keyword_names)}")
                keywords[key] = (match.group(2), self.argument(entry, match.group(2), key))
            else:
                if keywords:
                    raise UsageError("put name=value arguments after the positional ones (MODEL, DATA)")
                positional.append((word, self.argument(entry, word)))
        if len(positional) > len(parameters):
            raise UsageError(
                f"{cls.__name__} takes at most {len(parameters)} objects ({', '.join(names)}), got {len(positional)}"
            )
        positional = [(expression, entry.data(value) if parameter.name == "data" else value)
                      for parameter, (expression, value) in zip(parameters, positional)]
        keywords = {key: (expression, entry.data(value) if key == "data" else value) for key, (expression, value) in keywords.items()}
        for parameter, (expression, value) in zip(parameters, positional):
            self._check_kind(cls, parameter.name, expression, value, entry)
        for key, (expression, value) in keywords.items():
            self._check_kind(cls, key, expression, value, entry)
        import lrp_widgets

        try:
            return cls(*(value for _, value in positional), **{k: v for k, (_, v) in keywords.items()})
        except (lrp_widgets.LRPError, ValueError, TypeError) as error:
            raise UsageError(f"{cls.__name__} could not be built: {error}") from None

    def argument(self, entry, word: str, what: str = "argument"):
        """A word of ``%lrp_explore``: a bundled data set's name the explorer takes (``enso``), unless the
        notebook defines that name; otherwise a name or expression in the notebook."""
        if entry.is_data_name(word) and word not in self.shell.user_ns:
            return word
        return self.evaluate(word, what)

    @staticmethod
    def _check_kind(cls, name: str, expression: str, value, entry=None) -> None:
        """Clear errors for the usual mix-ups, by the constructor's parameter name."""
        import torch

        usage = f"usage: %lrp_explore {cls.__name__} [MODEL [DATA]]"
        if name == "model" and not isinstance(value, torch.nn.Module):
            hint = " (data goes after the model)" if hasattr(value, "x") else ""
            raise UsageError(f"{cls.__name__}: model {expression!r} is {_kind(value)}, not a torch.nn.Module{hint}; {usage}")
        if name == "models" and not (
            isinstance(value, dict) and value
            and all(isinstance(v, dict) and all(isinstance(m, torch.nn.Module) for m in v.values()) for v in value.values())
        ):
            raise UsageError(
                f"{cls.__name__}: models {expression!r} is {_kind(value)}; pass {{architecture: {{l1: model}}}}, "
                'e.g. {"MLP": {0.0: mlp, 1e-3: sparse_mlp}}'
            )
        if name == "esn" and not _is_esn(value):
            raise UsageError(f"{cls.__name__}: esn {expression!r} is {_kind(value)}, not an lrp_widgets.ESN")
        if name == "data" and isinstance(value, str) and entry is not None and entry.is_data_name(value):
            return
        if name == "data" and not hasattr(value, "x"):
            names = entry.data_names if entry is not None else ()
            hint = f"; or one of the bundled data sets: {', '.join(names)}" if names else ""
            raise UsageError(f"{cls.__name__}: data {expression!r} is {_kind(value)}, not a data set with .x (and .y){hint}")


def load_ipython_extension(ipython):
    """``%load_ext lrp_widgets``: register ``%lrp_explain`` and ``%lrp_explore``."""
    ipython.register_magics(LRPMagics)


def unload_ipython_extension(ipython):
    """``%unload_ext lrp_widgets``: remove the magics again."""
    manager = ipython.magics_manager
    for name in ("lrp_explain", "lrp_explore"):
        manager.magics["line"].pop(name, None)
    manager.registry.pop("LRPMagics", None)
