"""``factor``: add a term to a model's log density (Stan's ``target +=``).

``factor(log_weight) @ addr`` is a call of a generative function that makes **no random
choice** and whose score is ``sum(log_weight)``: the model's joint density gets the
extra factor ``exp(log_weight)``. Use it for likelihood terms that are not a
distribution over a value (a potential, a soft constraint, a marginalised likelihood
computed in the body, a Jacobian correction of a hand-made change of variables).

It behaves like an observed choice whose log density is ``log_weight``: it is part of
every operation's weight (Gen.jl's semantics, extended to a choice-free score):

* ``simulate``/``generate``/``assess``: the score includes ``log_weight``;
  ``generate``'s weight includes it whatever the constraints (nothing is sampled), so
  importance weights, SMC weights and log marginal likelihood estimates carry it;
* ``update``/``regenerate``: the weight includes ``new − old`` (nothing can be
  selected or constrained at its address);
* ``project``: ``log_weight`` for every selection (it is never a choice, so it always
  counts, like an observation).

A static model (:func:`genmlx.core.analyze`) keeps ``factor`` as a call site without
choices; :func:`genmlx.core.logdensity` and gradient-based inference include its term.
The weight must be a number or an array of any shape (it is summed); it may be ``-inf``
(a hard constraint: the execution has zero density), never NaN or ``+inf``.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, factor, choicemap
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def model():
    ...     x = normal(0.0, 1.0) @ "x"
    ...     factor(-0.5 * x * x) @ "shrink"      # the density of x becomes N(0, 1/2)
    ...     return x
    >>> tr, w = model.generate((), choicemap({"x": 1.0}), key=mx.random.key(0))
    >>> round(float(w), 4)   # log N(1; 0, 1) - 0.5
    -1.9189
    >>> tr.get_choices().addresses()   # the factor adds no choice
    ['x']
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from genmlx.core.choicemap import ChoiceMap, as_array
from genmlx.core.deterministic import DeterministicTrace
from genmlx.core.diff import Diff, NoChange, UnknownChange
from genmlx.core.errors import ConstraintError
from genmlx.core.gfi import (
    AssessResult,
    GenerateResult,
    GenerativeFunction,
    RegenerateResult,
    TracedCall,
    UpdateResult,
)
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace

__all__ = ["Factor", "FactorTrace", "factor"]


class FactorTrace(DeterministicTrace):
    """The trace of a :class:`Factor` call: no choices; the score is the factor's
    ``sum(log_weight)``; the return value is ``log_weight`` itself."""

    __slots__ = ()


class Factor(GenerativeFunction):
    """A generative function with no random choices and score ``sum(log_weight)``.

    Use the module-level instance :data:`factor`: ``factor(log_weight) @ addr``.
    """

    name = "factor"

    def __call__(self, *args: Any, **kwargs: Any) -> TracedCall:
        """``factor(log_weight) @ addr`` (or ``factor(log_weight=...) @ addr``)."""
        if kwargs:
            if args or set(kwargs) != {"log_weight"}:
                raise TypeError(
                    "factor takes one argument, the log weight: factor(log_weight) @ addr"
                )
            args = (kwargs["log_weight"],)
        if len(args) != 1:
            raise TypeError(
                f"factor takes one argument, the log weight (an array or number), got "
                f"{len(args)}: factor(log_weight) @ addr"
            )
        return TracedCall(self, args)

    def static_structure(self, args: tuple[Any, ...]) -> str | None:
        """A factor makes no choices: its structure is fixed."""
        del args
        return None

    @staticmethod
    def _weight(args: tuple[Any, ...]) -> mx.array:
        (lw,) = args
        w = as_array(lw)
        if not mx.issubdtype(w.dtype, mx.floating):
            w = w.astype(mx.float32)
        return mx.sum(w)

    def _reject(self, op: str, choices: ChoiceMap) -> None:
        if not choices.is_empty:
            raise ConstraintError(
                f"{op} on factor: a factor makes no random choice, but values were given "
                f"at {choices.addresses()!r} under its address; remove them"
            )

    def _trace(self, args: tuple[Any, ...]) -> FactorTrace:
        return FactorTrace(self, args, args[0], self._weight(args))

    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> Trace:
        return self._trace(args)

    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        self._reject("generate", constraints)
        tr = self._trace(args)
        return GenerateResult(tr, tr.score)

    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        self._reject("assess", choices)
        return AssessResult(self._weight(args), args[0])

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
            return UpdateResult(trace, mx.zeros_like(trace.score), NoChange, ChoiceMap.empty())
        new = self._trace(args)
        return UpdateResult(new, new.score - trace.score, UnknownChange, ChoiceMap.empty())

    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        if all(d.is_no_change() for d in argdiffs):
            return RegenerateResult(trace, mx.zeros_like(trace.score), NoChange)
        new = self._trace(args)
        return RegenerateResult(new, new.score - trace.score, UnknownChange)

    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        del selection
        return trace.score

    def __repr__(self) -> str:
        return "<factor>"


factor: Factor = Factor()
"""``factor(log_weight) @ addr`` adds ``sum(log_weight)`` to the model's log density
(see the module docstring)."""
