"""Domains of random choices: the set of values a distribution gives positive density.

A distribution declares its domain with ``domain(*params)`` (see
:class:`~genmlx.core.Distribution`); gradient-based inference (HMC, NUTS, MALA, MAP,
ADVI, the compiled log density of :func:`genmlx.core.logdensity`) maps every
continuous latent choice from its domain to the whole real space with the bijector
:func:`genmlx.core.bijectors.biject_to` picks, and adds the log-Jacobian.

Bounds may be arrays, and they may be computed from other choices inside a model
(``uniform(0.0, 1.0 - alpha) @ "beta1"``): a domain is built from the parameters of
one execution, so a bound that depends on another latent stays correct.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import constraints as C
    >>> C.positive
    positive
    >>> C.interval(0.0, 2.0)
    interval(0.0, 2.0)
    >>> bool(C.simplex.check(mx.array([0.2, 0.8])))
    True
    >>> C.simplex.event_ndim, C.positive.event_ndim
    (1, 0)
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx

__all__ = [
    "Constraint",
    "boolean",
    "circular",
    "corr_cholesky",
    "greater_than",
    "integer",
    "integer_interval",
    "interval",
    "less_than",
    "lower_cholesky",
    "nonnegative",
    "nonnegative_integer",
    "ordered",
    "positive",
    "positive_definite",
    "positive_integer",
    "real",
    "real_vector",
    "simplex",
    "unit_interval",
]


def _fmt(b: Any) -> str:
    if isinstance(b, mx.array):
        return f"{b.item():g}" if b.size == 1 else f"array{tuple(b.shape)}"
    return repr(b)


class Constraint:
    """A domain. Subclasses say whether it is discrete and how many trailing value
    dimensions form one event, and test membership with :meth:`check`."""

    is_discrete: bool = False
    event_ndim: int = 0
    name: str = "constraint"

    def check(self, value: mx.array) -> mx.array:
        """Boolean array: which events of ``value`` lie in the domain."""
        raise NotImplementedError

    @property
    def requirement(self) -> str:
        """The domain in words, for error messages (``"> 0"``, ``"in [0, 1]"``, ...)."""
        return f"in {self.name}"

    def check_number(self, x: float) -> bool:
        """:meth:`check` of one Python number (no arrays made for the simple domains:
        the eager parameter checks of distributions call it on every plain number)."""
        return bool(self.check(mx.array(x)).item())

    def __repr__(self) -> str:
        return self.name

    # Structural equality (two ``interval(0, 1)`` built separately are equal) keeps
    # caches keyed on domains stable; array bounds compare by identity.
    def _key(self) -> tuple[Any, ...]:
        return (type(self),)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Constraint) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def _num(b: Any) -> str:
    """A bound in words: ``0`` for ``0.0``, ``1.5``, ``-inf``, or ``low`` for an array."""
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        return f"{b:g}"
    return _fmt(b)


def _bkey(b: Any) -> Any:
    return ("array", id(b)) if isinstance(b, mx.array) else float(b)


class _Real(Constraint):
    name = "real"
    requirement = "a real number"

    def check_number(self, x: float) -> bool:
        return math.isfinite(x)

    def check(self, value: mx.array) -> mx.array:
        return mx.logical_not(mx.logical_or(mx.isnan(value), mx.isinf(value)))


class _RealVector(_Real):
    name = "real_vector"
    event_ndim = 1

    def check(self, value: mx.array) -> mx.array:
        return mx.all(super().check(value), axis=-1)


class greater_than(Constraint):
    """``(low, ∞)`` (``[low, ∞)`` with ``inclusive=True``); ``greater_than(0.0)`` is
    :data:`positive` and ``greater_than(0.0, inclusive=True)`` :data:`nonnegative`."""

    def __init__(self, low: Any, *, inclusive: bool = False) -> None:
        self.low = low
        self.inclusive = inclusive

    @property
    def name(self) -> str:  # type: ignore[override]
        if _is_zero(self.low):
            return "nonnegative" if self.inclusive else "positive"
        return f"greater_than({_fmt(self.low)}{', inclusive=True' if self.inclusive else ''})"

    @property
    def requirement(self) -> str:
        return f"{'>=' if self.inclusive else '>'} {_num(self.low)}"

    def check(self, value: mx.array) -> mx.array:
        out: mx.array = value >= self.low if self.inclusive else value > self.low
        return out

    def check_number(self, x: float) -> bool:
        if isinstance(self.low, mx.array):
            return super().check_number(x)
        return bool(x >= self.low if self.inclusive else x > self.low)

    def _key(self) -> tuple[Any, ...]:
        return (greater_than, _bkey(self.low), self.inclusive)


class less_than(Constraint):
    """``(-∞, high)``."""

    def __init__(self, high: Any) -> None:
        self.high = high

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"less_than({_fmt(self.high)})"

    @property
    def requirement(self) -> str:
        return f"< {_num(self.high)}"

    def check(self, value: mx.array) -> mx.array:
        out: mx.array = value < self.high
        return out

    def check_number(self, x: float) -> bool:
        if isinstance(self.high, mx.array):
            return super().check_number(x)
        return bool(x < self.high)

    def _key(self) -> tuple[Any, ...]:
        return (less_than, _bkey(self.high))


class interval(Constraint):
    """``[low, high]``: as the domain of a continuous choice the boundary has measure
    zero; as the range of a distribution's parameter an end can be excluded with
    ``left_open`` / ``right_open`` (a geometric ``p`` lies in ``(0, 1]``)."""

    def __init__(
        self, low: Any, high: Any, *, left_open: bool = False, right_open: bool = False
    ) -> None:
        self.low = low
        self.high = high
        self.left_open = left_open
        self.right_open = right_open

    @property
    def name(self) -> str:  # type: ignore[override]
        if _is_zero(self.low) and _is_one(self.high) and not (self.left_open or self.right_open):
            return "unit_interval"
        ends = ""
        if self.left_open or self.right_open:
            ends = f", left_open={self.left_open}, right_open={self.right_open}"
        return f"interval({_fmt(self.low)}, {_fmt(self.high)}{ends})"

    @property
    def requirement(self) -> str:
        lo = "(" if self.left_open else "["
        hi = ")" if self.right_open else "]"
        return f"in {lo}{_num(self.low)}, {_num(self.high)}{hi}"

    def check(self, value: mx.array) -> mx.array:
        above = value > self.low if self.left_open else value >= self.low
        below = value < self.high if self.right_open else value <= self.high
        return mx.logical_and(above, below)

    def check_number(self, x: float) -> bool:
        if isinstance(self.low, mx.array) or isinstance(self.high, mx.array):
            return super().check_number(x)
        above = x > self.low if self.left_open else x >= self.low
        below = x < self.high if self.right_open else x <= self.high
        return bool(above and below)

    def _key(self) -> tuple[Any, ...]:
        return (interval, _bkey(self.low), _bkey(self.high), self.left_open, self.right_open)


def _is_zero(b: Any) -> bool:
    return isinstance(b, (int, float)) and b == 0


def _is_one(b: Any) -> bool:
    return isinstance(b, (int, float)) and b == 1


class _Simplex(Constraint):
    name = "simplex"
    event_ndim = 1

    def check(self, value: mx.array) -> mx.array:
        ok = mx.all(value >= 0, axis=-1)
        return mx.logical_and(ok, mx.abs(mx.sum(value, axis=-1) - 1.0) < 1e-4)


class _Ordered(Constraint):
    name = "ordered"
    event_ndim = 1

    def check(self, value: mx.array) -> mx.array:
        if value.shape[-1] < 2:
            return mx.ones(value.shape[:-1], dtype=mx.bool_)
        return mx.all(value[..., 1:] > value[..., :-1], axis=-1)


class _LowerCholesky(Constraint):
    name = "lower_cholesky"
    event_ndim = 2

    def check(self, value: mx.array) -> mx.array:
        upper = mx.triu(value, k=1)
        diag = mx.diagonal(value, axis1=-2, axis2=-1)
        return mx.logical_and(mx.all(upper == 0, axis=(-2, -1)), mx.all(diag > 0, axis=-1))


class _CorrCholesky(_LowerCholesky):
    name = "corr_cholesky"

    def check(self, value: mx.array) -> mx.array:
        rows = mx.sum(value * value, axis=-1)
        unit = mx.all(mx.abs(rows - 1.0) < 1e-4, axis=-1)
        return mx.logical_and(super().check(value), unit)


class _PositiveDefinite(Constraint):
    name = "positive_definite"
    event_ndim = 2

    def check(self, value: mx.array) -> mx.array:
        sym = mx.all(mx.abs(value - mx.swapaxes(value, -1, -2)) < 1e-4, axis=(-2, -1))
        # eigenvalues need LAPACK on the CPU stream; a symmetric matrix is PD iff they
        # are all positive
        eig = mx.linalg.eigvalsh(value, stream=mx.cpu)
        return mx.logical_and(sym, mx.all(eig > 0, axis=-1))


class _Boolean(Constraint):
    name = "boolean"
    is_discrete = True

    def check(self, value: mx.array) -> mx.array:
        return mx.logical_or(value == 0, value == 1)


class integer_interval(Constraint):
    """Integers ``low, low + 1, ..., high`` (inclusive)."""

    is_discrete = True

    def __init__(self, low: Any, high: Any) -> None:
        self.low = low
        self.high = high

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"integer_interval({_fmt(self.low)}, {_fmt(self.high)})"

    @property
    def requirement(self) -> str:
        return f"an integer in [{_num(self.low)}, {_num(self.high)}]"

    def check(self, value: mx.array) -> mx.array:
        ok = mx.logical_and(value >= self.low, value <= self.high)
        return mx.logical_and(ok, value == mx.floor(value))

    def _key(self) -> tuple[Any, ...]:
        return (integer_interval, _bkey(self.low), _bkey(self.high))


class _NonnegativeInteger(Constraint):
    name = "nonnegative_integer"
    requirement = "an integer >= 0"
    is_discrete = True

    def check(self, value: mx.array) -> mx.array:
        return mx.logical_and(value >= 0, value == mx.floor(value))

    def check_number(self, x: float) -> bool:
        return math.isfinite(x) and x >= 0 and x == math.floor(x)


class _Integer(Constraint):
    name = "integer"
    requirement = "an integer"
    is_discrete = True

    def check(self, value: mx.array) -> mx.array:
        return mx.logical_and(mx.isfinite(value), value == mx.floor(value))

    def check_number(self, x: float) -> bool:
        return math.isfinite(x) and x == math.floor(x)


class _PositiveInteger(Constraint):
    name = "positive_integer"
    requirement = "an integer >= 1"
    is_discrete = True

    def check(self, value: mx.array) -> mx.array:
        return mx.logical_and(value >= 1, value == mx.floor(value))

    def check_number(self, x: float) -> bool:
        return math.isfinite(x) and x >= 1 and x == math.floor(x)


real: Constraint = _Real()
"""The real line (one number per event)."""
real_vector: Constraint = _RealVector()
"""Real vectors (the last axis is the event)."""
positive: Constraint = greater_than(0.0)
"""``(0, ∞)``."""
nonnegative: Constraint = greater_than(0.0, inclusive=True)
"""``[0, ∞)``."""
unit_interval: Constraint = interval(0.0, 1.0)
"""``(0, 1)``."""
circular: Constraint = interval(-math.pi, math.pi)
"""Angles, represented on ``(-π, π)``."""
simplex: Constraint = _Simplex()
"""The probability vectors (non-negative entries summing to one along the last axis)."""
ordered: Constraint = _Ordered()
"""Strictly increasing vectors (last axis)."""
lower_cholesky: Constraint = _LowerCholesky()
"""Lower-triangular matrices with a positive diagonal."""
corr_cholesky: Constraint = _CorrCholesky()
"""Cholesky factors of correlation matrices (lower triangular, unit-norm rows)."""
positive_definite: Constraint = _PositiveDefinite()
"""Symmetric positive definite matrices."""
boolean: Constraint = _Boolean()
"""``{False, True}`` (or ``{0, 1}``)."""
nonnegative_integer: Constraint = _NonnegativeInteger()
"""``0, 1, 2, ...``."""
positive_integer: Constraint = _PositiveInteger()
"""``1, 2, 3, ...``."""
integer: Constraint = _Integer()
"""The integers."""
