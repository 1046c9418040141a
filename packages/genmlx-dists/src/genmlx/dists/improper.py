"""Improper priors: ``flat`` (Lebesgue measure on ℝ) and ``half_flat`` (on ``(0, ∞)``).

Stan gives a parameter declared without a prior a flat density; NumPyro writes it
``ImproperUniform``. Here ``flat() @ "mu"`` is a choice whose log density is ``0``
everywhere (``half_flat``: ``0`` on ``(0, ∞)`` and ``-inf`` elsewhere). The density
does not integrate to one, so there is nothing to draw from: the choice can be
*scored* — :func:`genmlx.core.logdensity`, :func:`genmlx.infer.mcmc` with NUTS, HMC or
MALA, ``map_optimize``, ADVI, ``assess`` and ``generate`` with its value given — but
not *sampled*: ``simulate``, ``generate`` without its value, importance sampling with
the prior as proposal and SMC from the prior raise
:class:`~genmlx.core.ImproperPriorError` naming the operation and the address. The
posterior must be proper for inference to mean anything (a likelihood that pins the
parameter down).

``flat(shape)`` makes an array-valued choice (``flat(3)`` or ``flat((2, 3))``), every
element independently flat; the default is a scalar.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap
    >>> from genmlx.dists import normal, flat, half_flat
    >>> @gen
    ... def model():
    ...     mu = flat() @ "mu"
    ...     sigma = half_flat() @ "sigma"
    ...     normal(mu, sigma) @ "y"
    >>> lp, _ = model.assess((), choicemap({"mu": 0.0, "sigma": 1.0, "y": 0.0}))
    >>> round(float(lp), 4)   # only the likelihood: log N(0; 0, 1)
    -0.9189
    >>> model.simulate((), key=mx.random.key(0))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    genmlx.core.errors.ImproperPriorError: simulate at 'mu': flat is an improper prior...
"""

from __future__ import annotations

from typing import Any, ClassVar

import mlx.core as mx

from genmlx.core import constraints as C
from genmlx.core.distribution import Distribution, Param
from genmlx.core.errors import ImproperPriorError
from genmlx.core.gfi import TracedCall
from genmlx.dists.base import arr

__all__ = ["Flat", "HalfFlat", "flat", "half_flat"]


def _as_shape(shape: Any, name: str) -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, (tuple, list)) and all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        return tuple(shape)
    raise TypeError(
        f"{name}: the argument is the value's shape (an int or a tuple of ints, e.g. "
        f"{name}(3) @ 'beta'), got {shape!r}"
    )


class _Improper(Distribution):
    """Shared behaviour of the improper priors (no parameters but an optional shape)."""

    is_improper = True
    params = (Param("shape", aliases=("value_shape",)),)
    example_params: ClassVar[list[tuple[Any, ...]]] = []  # nothing to sample: no checks

    def __call__(self, *args: Any, **kwargs: Any) -> TracedCall:
        """``flat() @ addr`` (a scalar) or ``flat(shape) @ addr``."""
        if kwargs:
            if len(kwargs) != 1 or args or not set(kwargs) <= {"shape", "value_shape"}:
                raise TypeError(f"{self.name} takes one optional argument, the shape")
            args = tuple(kwargs.values())
        if len(args) > 1:
            raise TypeError(
                f"{self.name} takes one optional argument, the value's shape, got {len(args)}"
            )
        return TracedCall(self, (_as_shape(args[0] if args else (), self.name),))

    def sample(self, key: mx.array, value_shape: Any = (), *, shape: Any = ()) -> mx.array:
        del key, value_shape, shape
        raise ImproperPriorError(
            f"{self.name} is an improper prior: its density does not integrate to "
            "one, so no value can be drawn from it (prior simulation, generate without "
            "its value, importance sampling or SMC with the prior as proposal). Give the "
            "choice a value (observations or init=), sample the posterior with a gradient "
            "method (genmlx.infer.mcmc with NUTS/HMC/MALA, map_optimize, advi), or use a "
            "proper prior"
        )

    def reparam_sample(self, key: mx.array, value_shape: Any = (), *, shape: Any = ()) -> mx.array:
        return self.sample(key, value_shape, shape=shape)

    def _value_shape(self, params: tuple[Any, ...]) -> tuple[int, ...]:
        return tuple(params[0]) if params else ()

    def value_shape(self, args: tuple[Any, ...]) -> tuple[int, ...]:
        """The declared shape (nothing can be sampled to read it from)."""
        return self._value_shape(tuple(args))


class Flat(_Improper):
    """The improper flat prior on ℝ, ``log p(x) = 0`` for every finite ``x``.

    Argument: the value's shape (optional; a scalar by default). Domain: ℝ (the
    identity transform under gradient methods). Not samplable (see the module
    docstring).
    """

    name = "flat"

    def domain(self, *params: Any) -> C.Constraint:
        """The real line."""
        del params
        return C.real

    def log_prob(self, value: Any, value_shape: Any = ()) -> mx.array:
        del value_shape
        x = arr(value)
        return mx.where(mx.isfinite(x), mx.zeros_like(x), -mx.inf)

    def placeholder(self, *params: Any) -> mx.array:
        """Zeros of the value's shape (for structure analysis)."""
        return mx.zeros(self._value_shape(params), dtype=mx.float32)


class HalfFlat(_Improper):
    """The improper flat prior on ``(0, ∞)``, ``log p(x) = 0`` for ``x > 0`` and ``-inf``
    otherwise.

    Argument: the value's shape (optional). Domain: positive (``exp`` under gradient
    methods, with its log-Jacobian). Not samplable (see the module docstring).
    """

    name = "half_flat"

    def domain(self, *params: Any) -> C.Constraint:
        """``(0, ∞)``."""
        del params
        return C.positive

    def log_prob(self, value: Any, value_shape: Any = ()) -> mx.array:
        del value_shape
        x = arr(value)
        ok = mx.logical_and(x > 0, mx.isfinite(x))
        return mx.where(ok, mx.zeros_like(x), -mx.inf)

    def placeholder(self, *params: Any) -> mx.array:
        """Ones of the value's shape (for structure analysis)."""
        return mx.ones(self._value_shape(params), dtype=mx.float32)


flat: Flat = Flat()
"""The improper flat prior on ℝ (``flat() @ "mu"``, ``flat(3) @ "beta"``)."""

half_flat: HalfFlat = HalfFlat()
"""The improper flat prior on ``(0, ∞)`` (``half_flat() @ "sigma"``)."""
