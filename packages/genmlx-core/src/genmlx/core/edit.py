"""Edit requests: the generalised update of SMCP3 and GenJAX's ``edit``.

``gen_fn.edit(trace, request, key=)`` returns ``(new_trace, weight, retdiff,
backward_request)``. Applying ``backward_request`` to ``new_trace`` undoes the edit and
its weight is the negation of the forward weight (for deterministic edits), which is
what SMCP3 and involutive MCMC need.

* :class:`ConstraintEdit` — ``update`` with constraints (and optionally new args);
  backward: the discard, with the old args.
* :class:`SelectionEdit` — ``regenerate`` of a selection; backward: the same
  selection with the old args.
* :class:`ProposalEdit` — propose new values with a proposal generative function
  ``q(trace, *args)``, move the trace there with ``update``, and score the way back
  with a backward proposal: ``weight = update weight + log q_bwd(discard) −
  log q_fwd(proposed)``. The backward proposal must propose exactly the discarded
  addresses.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap
    >>> from genmlx.core.edit import ConstraintEdit
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def m():
    ...     return normal(0.0, 1.0) @ "x"
    >>> tr, _ = m.generate((), choicemap({"x": 0.5}), key=mx.random.key(0))
    >>> new, w, _, back = m.edit(tr, ConstraintEdit(choicemap({"x": -0.5})), key=mx.random.key(1))
    >>> _, w_back, _, _ = m.edit(new, back, key=mx.random.key(2))
    >>> float(w + w_back)
    0.0
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import mlx.core as mx

from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff, UnknownChange
from genmlx.core.random import split2
from genmlx.core.selection import Selection

if TYPE_CHECKING:
    from genmlx.core.gfi import EditResult, GenerativeFunction
    from genmlx.core.trace import Trace

__all__ = ["ConstraintEdit", "EditRequest", "ProposalEdit", "SelectionEdit"]


class EditRequest(ABC):
    """A requested change to a trace."""

    args: tuple[Any, ...] | None = None

    @abstractmethod
    def apply(self, gen_fn: GenerativeFunction, trace: Trace, key: mx.array) -> EditResult:
        """Perform the edit on an unbatched ``trace``."""

    def new_args(self, old_args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The arguments of the edited trace."""
        return old_args if self.args is None else self.args


def _backward_args(
    args: tuple[Any, ...] | None, old_args: tuple[Any, ...]
) -> tuple[tuple[Any, ...] | None, tuple[Diff, ...] | None]:
    if args is None:
        return None, None
    return old_args, tuple(UnknownChange for _ in old_args)


class ConstraintEdit(EditRequest):
    """Constrain choices (and optionally change args): ``update``."""

    def __init__(
        self,
        constraints: ChoiceMap,
        args: tuple[Any, ...] | None = None,
        argdiffs: tuple[Diff, ...] | None = None,
    ) -> None:
        self.constraints = constraints
        self.args = args
        self.argdiffs = argdiffs

    def apply(self, gen_fn: GenerativeFunction, trace: Trace, key: mx.array) -> EditResult:
        from genmlx.core.gfi import EditResult

        new, w, rd, discard = gen_fn.update(
            trace, self.constraints, self.args, self.argdiffs, key=key
        )
        bargs, bdiffs = _backward_args(self.args, trace.args)
        return EditResult(new, w, rd, ConstraintEdit(discard, bargs, bdiffs))

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        return [self.constraints, self.args], self.argdiffs

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> ConstraintEdit:
        return cls(children[0], children[1], aux)


class SelectionEdit(EditRequest):
    """Resample the selected choices from the model: ``regenerate``."""

    def __init__(
        self,
        selection: Selection,
        args: tuple[Any, ...] | None = None,
        argdiffs: tuple[Diff, ...] | None = None,
    ) -> None:
        self.selection = selection
        self.args = args
        self.argdiffs = argdiffs

    def apply(self, gen_fn: GenerativeFunction, trace: Trace, key: mx.array) -> EditResult:
        from genmlx.core.gfi import EditResult

        new, w, rd = gen_fn.regenerate(trace, self.selection, self.args, self.argdiffs, key=key)
        bargs, bdiffs = _backward_args(self.args, trace.args)
        return EditResult(new, w, rd, SelectionEdit(self.selection, bargs, bdiffs))

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        return [self.args], (self.selection, self.argdiffs)

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> SelectionEdit:
        return cls(aux[0], children[0], aux[1])


class ProposalEdit(EditRequest):
    """Move to choices proposed by ``proposal(trace, *proposal_args)`` (an SMCP3 move).

    The forward kernel ``K = proposal`` proposes choices ``c ~ K(·; x)`` (new values
    for existing addresses and/or choices at new addresses); the trace moves there with
    ``update(x, c ∪ constraints, args, argdiffs)``, which returns the overwritten and
    removed choices ``d`` (the discard); the backward kernel ``L = backward_proposal``
    scores the way back, ``L(d; x')``. The weight is the SMCP3 incremental weight

        ``log w = [log p(x'; args') - log p(x; args)] + log L(d; x') - log K(c; x)``

    where the bracket is ``update``'s weight (it only touches what changed). With
    ``args``/``constraints`` (new arguments and observations, as a particle filter
    step) and a forward kernel that proposes only new latent choices, ``d`` is empty
    and the weight is the usual custom-proposal weight ``p(x', y)/p(x) / K(c; x)``.

    Args:
        proposal: the forward kernel, a generative function whose first argument is
            the current trace; its choices are written into the trace.
        proposal_args: its remaining arguments.
        backward_proposal: the backward kernel ``L(new_trace, *backward_args)``; it must
            propose exactly the addresses the move overwrites or removes. Defaults to
            ``proposal`` (a symmetric MH-style move) when neither ``args`` nor
            ``constraints`` is given; otherwise to none, which requires an empty
            discard.
        backward_args: its remaining arguments (default: ``proposal_args``).
        args: new arguments for the model (default: unchanged).
        argdiffs: their diffs (default: computed by ``update``).
        constraints: fixed constraints added to the proposed choices (observations).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap
        >>> from genmlx.core.edit import ProposalEdit
        >>> from genmlx.core.testing.models import normal
        >>> @gen
        ... def m():
        ...     return normal(0.0, 1.0) @ "x"
        >>> @gen
        ... def shift(tr):
        ...     return normal(tr["x"], 0.5) @ "x"
        >>> tr, _ = m.generate((), choicemap({"x": 0.2}), key=mx.random.key(0))
        >>> new, w, _, back = m.edit(tr, ProposalEdit(shift), key=mx.random.key(1))
        >>> # random-walk MH: the kernel is symmetric, so w = log p(x') - log p(x)
        >>> bool(mx.allclose(w, new.score - tr.score))
        True
    """

    def __init__(
        self,
        proposal: GenerativeFunction,
        proposal_args: tuple[Any, ...] = (),
        backward_proposal: GenerativeFunction | None = None,
        backward_args: tuple[Any, ...] | None = None,
        *,
        args: tuple[Any, ...] | None = None,
        argdiffs: tuple[Diff, ...] | None = None,
        constraints: ChoiceMap | None = None,
    ) -> None:
        self.proposal = proposal
        self.proposal_args = tuple(proposal_args)
        plain = args is None and constraints is None
        self.backward_proposal = (
            backward_proposal if backward_proposal is not None or not plain else proposal
        )
        self.backward_args = (
            tuple(backward_args) if backward_args is not None else self.proposal_args
        )
        self.args = None if args is None else tuple(args)
        self.argdiffs = argdiffs
        self.constraints = constraints

    def apply(self, gen_fn: GenerativeFunction, trace: Trace, key: mx.array) -> EditResult:
        from genmlx.core.gfi import EditResult

        k1, k2 = split2(key)
        choices, fwd_logq, _ = self.proposal.propose((trace, *self.proposal_args), key=k1)
        cons = choices
        if self.constraints is not None and not self.constraints.is_empty:
            cons = self.constraints if choices.is_empty else choices.merge(self.constraints)
        new, w, rd, discard = gen_fn.update(trace, cons, self.args, self.argdiffs, key=k2)
        if self.backward_proposal is None:
            if not discard.is_empty:
                first = next(iter(discard.leaves()))[0]
                raise ValueError(
                    f"edit with ProposalEdit: the move overwrites or removes choices (e.g. "
                    f"at {first!r}) but no backward_proposal scores the way back; pass a "
                    "backward_proposal that proposes exactly those addresses"
                )
            bwd_logq = mx.zeros_like(w)
        else:
            bwd_logq, _ = self.backward_proposal.assess((new, *self.backward_args), discard)
        bargs, bdiffs = _backward_args(self.args, trace.args)
        back = ProposalEdit(
            self.backward_proposal if self.backward_proposal is not None else _nothing(),
            self.backward_args,
            self.proposal,
            self.proposal_args,
            args=bargs,
            argdiffs=bdiffs,
        )
        return EditResult(new, w + bwd_logq - fwd_logq, rd, back)

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        return (
            [self.proposal_args, self.backward_args, self.args, self.constraints],
            (self.proposal, self.backward_proposal, self.argdiffs),
        )

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> ProposalEdit:
        proposal, backward, argdiffs = aux
        pargs, bargs, args, constraints = children
        new = cls(proposal, pargs, backward, bargs, args=args, argdiffs=argdiffs)
        new.constraints = constraints
        new.backward_proposal = backward
        return new


@functools.cache
def _nothing() -> GenerativeFunction:
    """A kernel that proposes nothing (the reverse of a move whose discard is empty)."""
    from genmlx.core.dsl import gen  # dsl imports this module

    @gen
    def propose_nothing(trace: Any, *args: Any) -> None:
        return None

    return propose_nothing
