"""Deterministic generative functions: no random choices, score 0.

:func:`deterministic` wraps a plain function of arrays so it can be traced at an
address (``f(x) @ "f"``), composed by combinators and batched like any generative
function; its trace holds the arguments and return value and no choices.
:class:`CustomGradientGF` (Gen.jl's ``CustomGradientGF``) is a deterministic generative
function whose gradient the user supplies, for numerically delicate or expensive
functions; gradients through ``choice_gradients``/``param_gradients`` and ``mx.grad``
use it (built on ``mx.custom_function``).

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, deterministic
    >>> from genmlx.core.testing.models import normal
    >>> square = deterministic(lambda x: x * x, name="square")
    >>> @gen
    ... def m():
    ...     x = normal(0.0, 1.0) @ "x"
    ...     return square(x) @ "sq"
    >>> tr = m.simulate((), key=mx.random.key(0))
    >>> bool(tr["sq"] == tr["x"] ** 2), tr.get_choices().addresses()
    (True, ['x'])
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff, NoChange, UnknownChange
from genmlx.core.errors import ConstraintError
from genmlx.core.gfi import (
    AssessResult,
    GenerateResult,
    GenerativeFunction,
    RegenerateResult,
    UpdateResult,
)
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace

__all__ = ["CustomGradientGF", "DeterministicGF", "DeterministicTrace", "deterministic"]


class DeterministicTrace(Trace):
    """The trace of a deterministic generative function: arguments and return value."""

    __slots__ = ()

    def get_choices(self) -> ChoiceMap:
        return ChoiceMap(None, None, self.batch_shape)

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        return [self.args, self.retval, self.score], (self.batch_shape, self.gen_fn)

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> DeterministicTrace:
        batch_shape, gen_fn = aux
        return cls(gen_fn, children[0], children[1], children[2], batch_shape)


class DeterministicGF(GenerativeFunction):
    """Base of generative functions without random choices (``p(∅; x) = 1``)."""

    @abstractmethod
    def apply(self, *args: Any) -> Any:
        """The return value for ``args``."""

    def static_structure(self, args: tuple[Any, ...]) -> str | None:
        """A deterministic function makes no choices: its structure is fixed."""
        del args
        return None

    def _reject(self, op: str, choices: ChoiceMap) -> None:
        if not choices.is_empty:
            raise ConstraintError(
                f"{op} on {self.name}: it makes no random choices, but values were given "
                f"at {choices.addresses()!r}"
            )

    def _trace(self, args: tuple[Any, ...]) -> DeterministicTrace:
        return DeterministicTrace(self, args, self.apply(*args), mx.array(0.0))

    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> Trace:
        return self._trace(args)

    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        self._reject("generate", constraints)
        return GenerateResult(self._trace(args), mx.array(0.0))

    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        self._reject("assess", choices)
        return AssessResult(mx.array(0.0), self.apply(*args))

    def _update(
        self,
        trace: Trace,
        constraints: ChoiceMap,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> UpdateResult:
        self._reject("update", constraints)
        if all(d.is_no_change() for d in argdiffs):
            return UpdateResult(trace, mx.array(0.0), NoChange, ChoiceMap.empty())
        return UpdateResult(self._trace(args), mx.array(0.0), UnknownChange, ChoiceMap.empty())

    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        if all(d.is_no_change() for d in argdiffs):
            return RegenerateResult(trace, mx.array(0.0), NoChange)
        return RegenerateResult(self._trace(args), mx.array(0.0), UnknownChange)

    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        return mx.array(0.0)


class _Wrapped(DeterministicGF):
    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.fn = fn
        self.name = name

    def apply(self, *args: Any) -> Any:
        return self.fn(*args)


def deterministic(fn: Callable[..., Any], name: str | None = None) -> DeterministicGF:
    """A generative function that returns ``fn(*args)`` and makes no random choices."""
    label: str = name or str(getattr(fn, "__name__", "deterministic"))
    return _Wrapped(fn, label)


class CustomGradientGF(DeterministicGF):
    """A deterministic generative function with a hand-written gradient.

    Subclasses implement :meth:`apply` (the value, from array arguments) and
    :meth:`gradient` (the vector–Jacobian product). Every use of the function inside a
    model, under ``mx.grad``, goes through ``gradient``.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import CustomGradientGF
        >>> class LogSumExp2(CustomGradientGF):
        ...     name = "logsumexp2"
        ...     def apply(self, a, b):
        ...         return mx.logaddexp(a, b)
        ...     def gradient(self, args, retval, retgrad):
        ...         a, b = args
        ...         return (retgrad * mx.exp(a - retval), retgrad * mx.exp(b - retval))
        >>> f = LogSumExp2()
        >>> g = mx.grad(lambda a: f.simulate((a, mx.array(0.0))).retval)(mx.array(0.0))
        >>> float(g)
        0.5
    """

    def __init__(self) -> None:
        @mx.custom_function
        def fwd(*args: mx.array) -> Any:
            return self.apply(*args)

        @fwd.vjp
        def vjp(primals: Any, cotangent: Any, output: Any) -> Any:
            # MLX passes (and expects back) a bare array for a one-argument function
            single = isinstance(primals, mx.array)
            args = (primals,) if single else tuple(primals)
            grads = tuple(self.gradient(args, output, cotangent))
            return grads[0] if single else grads

        self._fwd = fwd

    @abstractmethod
    def gradient(self, args: tuple[Any, ...], retval: Any, retgrad: Any) -> tuple[Any, ...]:
        """Gradients w.r.t. each argument given the return value's cotangent ``retgrad``."""

    def _trace(self, args: tuple[Any, ...]) -> DeterministicTrace:
        return DeterministicTrace(self, args, self._fwd(*args), mx.array(0.0))

    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        self._reject("assess", choices)
        return AssessResult(mx.array(0.0), self._fwd(*args))
