"""One calling convention, ``f(model, x, *, target=None, composite=..., ...)``, and its deprecation path.

Public functions take the model and the input positionally and everything else by keyword.
:func:`keyword_arguments` keeps older calls working for a while: arguments once passed by
position, and parameters that were renamed, are accepted with a ``DeprecationWarning`` that
says how to write the call now.
"""
from __future__ import annotations

import functools
import inspect
import warnings

__all__ = ["keyword_arguments"]


def keyword_arguments(*former_positional: str, renamed: dict | None = None):
    """Decorator: accept the old positional arguments and old keyword names, with a warning.

    Parameters
    ----------
    former_positional : str
        The keyword-only parameters, in the order the old signature took them by position.
    renamed : dict, optional
        ``{old name: new name}`` of renamed parameters.
    """
    renamed = dict(renamed or {})

    def decorate(function):
        parameters = inspect.signature(function).parameters.values()
        n_positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)
        positional_names = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        old_positional = list(positional_names) + list(former_positional)
        name = function.__name__

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            for old, new in renamed.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{name}() got both {old!r} and its new name {new!r}; pass {new!r} only")
                    warnings.warn(f"{name}(): the argument {old!r} is now called {new!r}", DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            if len(args) > n_positional:
                if len(args) > len(old_positional):
                    raise TypeError(f"{name}() takes {n_positional} positional arguments ({', '.join(positional_names)}); "
                                    f"pass the others by keyword")
                moved = old_positional[n_positional:len(args)]
                warnings.warn(
                    f"{name}(): passing {', '.join(moved)} by position is deprecated; write "
                    + ", ".join(f"{m}=..." for m in moved),
                    DeprecationWarning,
                    stacklevel=2,
                )
                for key, value in zip(moved, args[n_positional:]):
                    if key in kwargs:
                        raise TypeError(f"{name}() got multiple values for argument {key!r}")
                    kwargs[key] = value
                args = args[:n_positional]
            return function(*args, **kwargs)

        return wrapper

    return decorate
