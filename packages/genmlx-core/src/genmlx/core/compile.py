"""Compiling GFI operations and whole inference loops with ``mx.compile``.

:func:`compile` turns a Python function of keys, arrays, traces and choice maps into a
pure function of its array leaves, compiled once per input structure and shapes. The
result is rebuilt into the same objects the interpreted function returns (traces,
NamedTuples, choice maps), with the same values: compilation fuses the graph but does
not change what is computed.

Rules for compiled functions: pass every array (keys included) as an argument rather
than capturing it from an enclosing scope (captured arrays are frozen at the first
call); non-array arguments (ints, strings, generative functions, selections) are static
and a new value triggers a new compilation. ``key=None`` inside a compiled function
draws fresh keys in every call (from a hidden key input the compiled function gets from
the operating system each time), as it does uncompiled; a plain ``mx.compile`` cannot
do that, so use this one.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap, compile
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def model(mu):
    ...     return normal(mu, 1.0) @ "x"
    >>> step = compile(lambda key, mu: model.vsimulate((mu,), 1000, key=key))
    >>> tr = step(mx.random.key(0), mx.array(2.0))
    >>> tr2 = model.vsimulate((mx.array(2.0),), 1000, key=mx.random.key(0))
    >>> bool(mx.all(tr["x"] == tr2["x"]))
    True
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.random import fresh_key
from genmlx.core.threads import guard_thread
from genmlx.core.tree import TreeDef, flatten, unflatten

__all__ = ["compile"]

F = TypeVar("F", bound=Callable[..., Any])


class _Compiled:
    """One ``mx.compile``'d function per input structure/shape signature."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn, updated=())
        self.fn = fn
        self.cache: dict[Any, tuple[Callable[..., Any], dict[str, TreeDef]]] = {}

    def __call__(self, *args: Any) -> Any:
        guard_thread()
        leaves, in_td = flatten(args)
        sig = (in_td, tuple((tuple(x.shape), x.dtype) for x in leaves))
        entry = self.cache.get(sig)
        if entry is None:
            box: dict[str, TreeDef] = {}
            fn = self.fn

            def pure(*lv: mx.array) -> list[mx.array]:
                a = unflatten(in_td, list(lv[:-1]))
                with runtime.transforming(), runtime.compiling(lv[-1]):
                    out = fn(*a)
                out_leaves, out_td = flatten(out)
                box["td"] = out_td
                return out_leaves

            entry = (mx.compile(pure), box)
            self.cache[sig] = entry
        cfn, box = entry
        # a hidden per-call key: key=None inside fn is fresh in every call
        out_leaves = cfn(*leaves, fresh_key())
        return unflatten(box["td"], list(out_leaves))


def compile(fn: F) -> F:
    """Compile ``fn`` (a GFI operation or a whole inference loop) with ``mx.compile``.

    Args:
        fn: a function whose arguments are keys, arrays, traces, choice maps,
            (named) tuples/lists/dicts of them, or static Python values, and whose
            result is made of the same.

    Returns:
        A function with the same signature and results, compiled per input signature.
    """
    return _Compiled(fn)  # type: ignore[return-value]
