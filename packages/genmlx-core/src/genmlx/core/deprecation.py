"""Deprecating a public name for one release, the same way in every GenMLX package.

When a function, an argument, a result field or a module moves, its old name keeps
working for one release and each use emits a :class:`DeprecationWarning` that names
the new one. Three helpers cover the cases:

* :func:`renamed_arguments` — a decorator mapping old keyword names to new ones;
* :func:`deprecated_alias` — the old name of a function (a wrapper that warns, then
  calls the new one);
* :func:`moved` — a module ``__getattr__`` for names that now live elsewhere (the old
  import path keeps working);
* :class:`MethodNowProperty` — the value of a property that used to be a method: an
  MLX array that, called like the old method (``state.log_ml_estimate``), warns and
  returns itself.

Example:
    >>> import warnings
    >>> @renamed_arguments(observed="observations")
    ... def f(*, observations=None):
    ...     return observations
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     f(observed=1)
    ...     print(str(w[0].message).split(" (")[0])
    1
    f: the argument 'observed' is deprecated; use 'observations'
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import mlx.core as mx

__all__ = [
    "MethodNowProperty",
    "deprecated_alias",
    "moved",
    "renamed_arguments",
    "warn_deprecated",
]

F = TypeVar("F", bound=Callable[..., Any])


def warn_deprecated(what: str, instead: str, *, stacklevel: int = 3) -> None:
    """Emit the standard warning: ``"<what> is deprecated; use <instead> ..."``.

    Args:
        what: the old thing, e.g. ``"genmlx.infer.mix"``.
        instead: the new one, e.g. ``"genmlx.infer.mix_kernels"``.
        stacklevel: as for ``warnings.warn`` (the default points at the caller of
            the function that calls this one).
    """
    warnings.warn(
        f"{what} is deprecated; use {instead} (the old name goes in the next release)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed_arguments(**renames: str) -> Callable[[F], F]:
    """Accept the old keyword names ``renames`` (old → new) with a warning.

    Passing both the old and the new name raises ``TypeError``.

    Example:
        >>> @renamed_arguments(n_iters="n_steps")
        ... def run(*, n_steps=1):
        ...     return n_steps
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     run(n_iters=5)
        5
    """

    def decorate(fn: F) -> F:
        name = getattr(fn, "__name__", "function")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(
                            f"{name}: got both {old!r} (deprecated) and {new!r}; pass {new!r}"
                        )
                    warnings.warn(
                        f"{name}: the argument {old!r} is deprecated; use {new!r} (the old "
                        "name goes in the next release)",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        wrapper.__deprecated_arguments__ = dict(renames)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def deprecated_alias(fn: F, old_name: str, new_name: str | None = None) -> F:
    """A function that warns that ``old_name`` is deprecated, then calls ``fn``.

    Args:
        fn: the new function.
        old_name: the old public name, e.g. ``"genmlx.infer.mix"``.
        new_name: the new public name (default: ``fn``'s module and name).
    """
    new = new_name or f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warn_deprecated(old_name, new)
        return fn(*args, **kwargs)

    alias.__name__ = old_name.rsplit(".", 1)[-1]
    alias.__qualname__ = alias.__name__
    alias.__doc__ = f"Deprecated alias of :func:`{new}` (it goes in the next release)."
    alias.__deprecated_alias_of__ = fn  # type: ignore[attr-defined]
    return alias  # type: ignore[return-value]


def moved(module: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for names that moved to other modules.

    Args:
        module: the old module's name (``__name__``).
        names: old attribute name → ``"new.module:attribute"`` (or ``"new.module"`` when
            the attribute keeps its name).

    Returns:
        A function to assign to the old module's ``__getattr__``: reading a moved name
        warns and returns the object from its new home; any other name raises
        ``AttributeError`` as usual.

    Example:
        >>> ga = moved("pkg.old", {"thing": "genmlx.core.deprecation:warn_deprecated"})
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     ga("thing").__name__
        'warn_deprecated'
    """
    table = dict(names)

    def __getattr__(name: str) -> Any:
        target = table.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        mod, _, attr = target.partition(":")
        attr = attr or name
        warn_deprecated(f"{module}.{name}", f"{mod}.{attr}")
        return getattr(importlib.import_module(mod), attr)

    return __getattr__


class MethodNowProperty(mx.array):
    """An array returned by a property that used to be a method.

    It is an ordinary ``mx.array`` (arithmetic gives plain arrays; it works under
    ``mx.compile``, ``mx.vmap`` and ``mx.grad``); calling it — the old method call —
    warns and returns the array.

    Example:
        >>> import warnings
        >>> v = MethodNowProperty(mx.array(1.5), "State.log_ml_estimate")
        >>> float(v + 1)
        2.5
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     float(v())
        1.5
    """

    _name: str

    def __init__(self, value: mx.array, name: str) -> None:
        super().__init__(value)
        self._name = name

    def __call__(self) -> mx.array:
        warn_deprecated(
            f"calling {self._name}()",
            f"the property {self._name} (drop the parentheses)",
        )
        return mx.array(self)
