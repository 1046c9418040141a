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
    """Move to choices proposed by ``proposal(trace, *proposal_args)``.

    Args:
        proposal: a generative function whose first argument is the current trace;
            its choices are the new values to write into the trace.
        proposal_args: its remaining arguments.
        backward_proposal: scores the reverse move on the new trace; it must propose
            exactly the addresses the forward move overwrites. Defaults to ``proposal``
            (a symmetric-shape move, as in MH with a custom proposal).
        backward_args: its remaining arguments (default: ``proposal_args``).
    """

    def __init__(
        self,
        proposal: GenerativeFunction,
        proposal_args: tuple[Any, ...] = (),
        backward_proposal: GenerativeFunction | None = None,
        backward_args: tuple[Any, ...] | None = None,
    ) -> None:
        self.proposal = proposal
        self.proposal_args = tuple(proposal_args)
        self.backward_proposal = backward_proposal if backward_proposal is not None else proposal
        self.backward_args = (
            tuple(backward_args) if backward_args is not None else self.proposal_args
        )

    def apply(self, gen_fn: GenerativeFunction, trace: Trace, key: mx.array) -> EditResult:
        from genmlx.core.gfi import EditResult

        k1, k2 = split2(key)
        choices, fwd_logq, _ = self.proposal.propose((trace, *self.proposal_args), key=k1)
        new, w, rd, discard = gen_fn.update(trace, choices, key=k2)
        bwd_logq, _ = self.backward_proposal.assess((new, *self.backward_args), discard)
        back = ProposalEdit(
            self.backward_proposal, self.backward_args, self.proposal, self.proposal_args
        )
        return EditResult(new, w + bwd_logq - fwd_logq, rd, back)

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        return [self.proposal_args, self.backward_args], (self.proposal, self.backward_proposal)

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> ProposalEdit:
        return cls(aux[0], children[0], aux[1], children[1])
