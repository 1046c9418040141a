"""The ``Distribution`` base: a generative function with exactly one random choice.

A distribution's choice map holds a single value at the root address ``()``; its
return value is that value. Subclasses implement two methods and may declare more:

* ``sample(key, *params, shape=())`` — a draw of shape ``shape + batch + event``,
  where *batch* is the parameters' broadcast batch shape (vectorised: no Python loops);
* ``log_prob(value, *params)`` — the log density (or mass), broadcasting, one number
  per event (so shape ``value.shape[:value.ndim - event_ndim]`` after broadcasting);
* optionally ``reparam_sample`` (set ``has_reparam = True``) and ``support(*params)``
  (set ``is_enumerable = True``) for finite discrete distributions.

The GFI score of a choice is the *sum* of ``log_prob`` over its elements: a choice whose
value is a vector of independent normals has one score.

Example:
    >>> import math
    >>> import mlx.core as mx
    >>> from genmlx.core import Distribution
    >>> class Exponential(Distribution):
    ...     name = "exponential"
    ...     def sample(self, key, rate, *, shape=()):
    ...         rate = mx.array(rate)
    ...         u = mx.random.uniform(shape=tuple(shape) + rate.shape, key=key)
    ...         return -mx.log1p(-u) / rate
    ...     def log_prob(self, value, rate):
    ...         value, rate = mx.array(value), mx.array(rate)
    ...         return mx.where(value >= 0, mx.log(rate) - rate * value, -mx.inf)
    >>> exponential = Exponential()
    >>> round(float(exponential.assess((2.0,), exponential.leaf(1.0)).log_density), 4)
    -1.3069
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.address import Path
from genmlx.core.choicemap import ChoiceMap, as_array
from genmlx.core.constraints import Constraint
from genmlx.core.diff import Diff, NoChange, UnknownChange
from genmlx.core.errors import ConstraintError, MissingChoiceError
from genmlx.core.gfi import (
    AssessResult,
    GenerateResult,
    GenerativeFunction,
    RegenerateResult,
    UpdateResult,
)
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace

__all__ = ["Distribution", "DistributionTrace", "where_mask"]


def where_mask(mask: mx.array, a: mx.array, b: mx.array) -> mx.array:
    """``a`` where ``mask`` holds, else ``b``; the mask broadcasts over trailing event axes.

    The result has ``b``'s dtype (the sampled or kept value's).
    """
    a = a.astype(b.dtype) if a.dtype != b.dtype else a
    if b.ndim > mask.ndim:
        mask = mask.reshape(mask.shape + (1,) * (b.ndim - mask.ndim))
    return mx.where(mask, a, b)


class DistributionTrace(Trace):
    """The trace of a distribution: one value and its log density."""

    __slots__ = ("value",)

    value: mx.array

    def __init__(
        self,
        gen_fn: Distribution,
        args: tuple[Any, ...],
        value: mx.array,
        score: mx.array,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        super().__init__(gen_fn, args, value, score, batch_shape)
        object.__setattr__(self, "value", value)

    def get_choices(self) -> ChoiceMap:
        return ChoiceMap(self.value, None, self.batch_shape)

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        return [self.args, self.value, self.score], (self.batch_shape, self.gen_fn)

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> DistributionTrace:
        batch_shape, gen_fn = aux
        args, value, score = children
        return cls(gen_fn, args, value, score, batch_shape)

    def site_scores(self) -> Iterator[tuple[Path, mx.array]]:
        yield (), self.score


class Distribution(GenerativeFunction):
    """Base class of distributions (generative functions with one choice at the root).

    Subclasses set these class attributes as they apply.

    Attributes:
        name: registry name.
        has_reparam: ``reparam_sample`` is implemented (gradients flow through samples).
        is_enumerable: ``support(*params)`` lists the finite support.
        is_discrete: values are integers or booleans (no gradient w.r.t. the value).
        event_ndim: trailing value dimensions forming one event (0 for scalars,
            1 for ``mv_normal``, 2 for ``wishart``).
    """

    name: str = "distribution"
    has_reparam: bool = False
    is_enumerable: bool = False
    is_discrete: bool = False
    event_ndim: int = 0

    # The signatures below are written ``(*args, **kwargs)`` so that subclasses can
    # name their parameters (``sample(self, key, mu, sigma, *, shape=())``); the
    # calling convention is ``sample(key, *params, shape=())`` and
    # ``log_prob(value, *params)``.
    @abstractmethod
    def sample(self, *args: Any, **kwargs: Any) -> mx.array:
        """``sample(key, *params, shape=())``: a draw of shape
        ``shape + batch_shape(params) + event_shape``."""

    @abstractmethod
    def log_prob(self, *args: Any, **kwargs: Any) -> mx.array:
        """``log_prob(value, *params)``: log density/mass, broadcasting, one number per
        event."""

    def reparam_sample(self, *args: Any, **kwargs: Any) -> mx.array:
        """``reparam_sample(key, *params, shape=())``: a sample that is a differentiable
        function of the parameters.

        Raises:
            TypeError: when the distribution has no reparameterisation.
        """
        if self.has_reparam:
            return self.sample(*args, **kwargs)
        raise TypeError(f"{self.name} has no reparameterised sampler (has_reparam is False)")

    def support(self, *params: Any) -> mx.array:
        """The finite support, as an array of values (finite discrete distributions).

        Raises:
            TypeError: when the distribution is not enumerable.
        """
        raise TypeError(f"{self.name} has no finite support to enumerate (is_enumerable is False)")

    def static_structure(self, args: tuple[Any, ...]) -> str | None:
        """A distribution always makes exactly one choice: its structure is fixed."""
        del args
        return None

    def domain(self, *params: Any) -> Constraint | None:
        """The set of values with positive density, as a
        :class:`~genmlx.core.constraints.Constraint` (``None``: not declared).

        Gradient-based inference maps each continuous latent choice from this domain
        to unconstrained space (:func:`genmlx.core.bijectors.biject_to`). It may depend
        on the parameters (``uniform(low, high)`` is ``interval(low, high)``), which
        may themselves be computed from other choices. The default is ``None``
        (unknown) rather than the real line, because assuming an unbounded domain for
        a bounded distribution would silently sample outside its support; a
        distribution meant for gradient methods declares its domain.
        """
        del params
        return None

    def leaf(self, value: Any) -> ChoiceMap:
        """The choice map holding ``value`` as this distribution's choice."""
        return ChoiceMap.leaf(value)

    def score(self, value: mx.array, args: tuple[Any, ...]) -> mx.array:
        """The GFI score of one choice: ``sum(log_prob(value, *args))``."""
        return mx.sum(self.log_prob(value, *args))

    # ------------------------------------------------------------------ GFI
    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> DistributionTrace:
        v = self.sample(key, *args)
        return DistributionTrace(self, args, v, self.score(v, args))

    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        if constraints.has_root_value:
            v = as_array(constraints.value)
            m = constraints.leaf_mask
            if m is not None:  # given where the mask holds, sampled elsewhere
                v = where_mask(m, v, self.sample(key, *args))
                s = self.score(v, args)
                return GenerateResult(
                    DistributionTrace(self, args, v, s), mx.where(m, s, mx.zeros_like(s))
                )
            s = self.score(v, args)
            return GenerateResult(DistributionTrace(self, args, v, s), s)
        if not constraints.is_empty and not runtime.is_lenient():
            raise ConstraintError(
                f"generate on {self.name}: constraints hold sub-addresses "
                f"{constraints.addresses()!r} but a distribution has a single choice"
            )
        tr = self._simulate(args, key)
        return GenerateResult(tr, mx.zeros_like(tr.score))

    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        if not choices.has_root_value and runtime.is_lenient():
            v = self.sample(mx.random.key(0), *args)  # a branch not taken: any value
            return AssessResult(self.score(v, args), v)
        if not choices.has_root_value:
            raise MissingChoiceError(f"assess on {self.name}: no value given for its choice")
        v = as_array(choices.value)
        return AssessResult(self.score(v, args), v)

    def _update(
        self,
        trace: Trace,
        constraints: ChoiceMap,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> UpdateResult:
        assert isinstance(trace, DistributionTrace)
        if constraints.has_root_value:
            v = as_array(constraints.value)
            m = constraints.leaf_mask
            if m is not None:  # given where the mask holds, kept elsewhere
                v = where_mask(m, v, trace.value)
            s = self.score(v, args)
            return UpdateResult(
                DistributionTrace(self, args, v, s),
                s - trace.score,
                UnknownChange,
                ChoiceMap(trace.value, None, (), m),
            )
        if not constraints.is_empty and not runtime.is_lenient():
            raise ConstraintError(
                f"update on {self.name}: constraints hold sub-addresses "
                f"{constraints.addresses()!r} but a distribution has a single choice"
            )
        if all(d.is_no_change() for d in argdiffs):
            return UpdateResult(trace, mx.zeros_like(trace.score), NoChange, ChoiceMap.empty())
        s = self.score(trace.value, args)
        return UpdateResult(
            DistributionTrace(self, args, trace.value, s),
            s - trace.score,
            NoChange,
            ChoiceMap.empty(),
        )

    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        assert isinstance(trace, DistributionTrace)
        if selection.contains_path(()):
            new = self._simulate(args, key)
            return RegenerateResult(new, mx.zeros_like(new.score), UnknownChange)
        if all(d.is_no_change() for d in argdiffs):
            return RegenerateResult(trace, mx.zeros_like(trace.score), NoChange)
        s = self.score(trace.value, args)
        return RegenerateResult(
            DistributionTrace(self, args, trace.value, s), s - trace.score, NoChange
        )

    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        return trace.score if selection.contains_path(()) else mx.zeros_like(trace.score)

    def __repr__(self) -> str:
        return f"<distribution {self.name}>"
