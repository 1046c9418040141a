"""Checking and normalising the arguments of GFI operations, in one place.

Every public GFI entry point (and every package built on core: inference, combinators)
normalises what the user passed the same way and words the errors the same way:

* :func:`as_args` — the model's arguments as a tuple;
* :func:`as_argdiffs` — one :class:`~genmlx.core.diff.Diff` per argument;
* :func:`as_choicemap` — constraints or choices: a ChoiceMap, a dict, or ``None``;
* :func:`as_selection` — a :class:`~genmlx.core.selection.Selection`;
* :func:`batched_constraints` — whether a choice map is batched like a trace;
* :func:`check_finite` — the score check after an operation (NaN or +inf scores, and
  -inf where a sampled value must be in the support, raise
  :class:`~genmlx.core.errors.NonFiniteScoreError` naming the site).

Example:
    >>> as_args([1.0, 2.0], "simulate")
    (1.0, 2.0)
    >>> as_choicemap({"x": 1.0}, "generate").addresses()
    ['x']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.address import format_address
from genmlx.core.choicemap import ChoiceMap, choicemap
from genmlx.core.config import check_scores_enabled
from genmlx.core.diff import Diff
from genmlx.core.errors import NonFiniteScoreError
from genmlx.core.selection import Selection
from genmlx.core.threads import translate_stream_errors
from genmlx.core.trace import Trace

__all__ = [
    "as_argdiffs",
    "as_args",
    "as_choicemap",
    "as_selection",
    "batched_constraints",
    "check_finite",
]


def as_args(args: Any, op: str) -> tuple[Any, ...]:
    """``args`` as a tuple (a list is converted); a ``TypeError`` naming ``op`` otherwise."""
    if isinstance(args, tuple):
        return args
    if isinstance(args, list):
        return tuple(args)
    raise TypeError(
        f"{op}: args must be a tuple of arguments, e.g. (xs,) for one argument or () for none;"
        f" got {type(args).__name__}"
    )


def as_argdiffs(argdiffs: Any, op: str, gf: Any) -> tuple[Diff, ...]:
    """``argdiffs`` as a tuple of :class:`~genmlx.core.diff.Diff` values, one per argument.

    Raises:
        TypeError: not a tuple or list, or an element is not a Diff (naming ``op``
            and ``gf``).
    """
    if not isinstance(argdiffs, (tuple, list)):
        raise TypeError(
            f"{op} on {gf!r}: argdiffs must be a tuple with one Diff per argument "
            f"(NoChange, UnknownChange, ...); got {type(argdiffs).__name__}"
        )
    for i, d in enumerate(argdiffs):
        if not isinstance(d, Diff):
            raise TypeError(
                f"{op} on {gf!r}: argdiffs[{i}] is {d!r} ({type(d).__name__}), not a Diff; use "
                "NoChange, UnknownChange or VectorDiff(...) from genmlx.core"
            )
    return tuple(argdiffs)


def as_choicemap(c: Any, op: str, what: str = "constraints") -> ChoiceMap:
    """``c`` as a ChoiceMap: ``None`` is the empty one, a dict is converted.

    Raises:
        TypeError: anything else, naming ``op`` and ``what`` the argument holds.
    """
    if c is None:
        return ChoiceMap.empty()
    if isinstance(c, ChoiceMap):
        return c
    if isinstance(c, Mapping):
        return choicemap(c)
    raise TypeError(f"{op}: {what} must be a ChoiceMap (or a dict), got {type(c).__name__}")


def as_selection(s: Any, op: str) -> Selection:
    """``s`` if it is a Selection; a ``TypeError`` naming ``op`` otherwise."""
    if isinstance(s, Selection):
        return s
    raise TypeError(
        f"{op}: selection must be a Selection, e.g. select('x'), Selection.all(); "
        f"got {type(s).__name__}"
    )


def batched_constraints(c: ChoiceMap, n: int, op: str) -> bool:
    """Whether ``c`` is batched (one value per particle of ``n``).

    Raises:
        ValueError: ``c`` is batched with a batch shape other than ``(n,)``.
    """
    if not c.batch_shape:
        return False
    if c.batch_shape != (n,):
        raise ValueError(
            f"{op}: the choice map's batch_shape {c.batch_shape} does not match the "
            f"trace's batch shape ({n},)"
        )
    return True


def check_finite(
    op: str,
    gf: Any,
    trace: Trace | None,
    weight: mx.array | None,
    allow_neg_inf: bool = True,
) -> None:
    """Raise NonFiniteScoreError when a score/weight is NaN or +inf (or -inf if not allowed)."""
    if not check_scores_enabled() or runtime.in_transform():
        return
    with translate_stream_errors(f"{op} on {gf!r}"):
        _check_finite_now(op, gf, trace, weight, allow_neg_inf)


def _check_finite_now(
    op: str,
    gf: Any,
    trace: Trace | None,
    weight: mx.array | None,
    allow_neg_inf: bool,
) -> None:
    arrays = [a for a in (trace.score if trace is not None else None, weight) if a is not None]
    if not arrays:
        return
    try:
        bad = mx.array(False)
        for a in arrays:
            bad = mx.logical_or(bad, mx.any(mx.logical_or(mx.isnan(a), a == mx.inf)))
            if not allow_neg_inf:
                bad = mx.logical_or(bad, mx.any(a == -mx.inf))
        if not bad.item():
            return
    except ValueError as e:  # under a user's own mx.compile / mx.grad: cannot evaluate
        if runtime.is_transform_eval_error(e):
            return
        raise
    if trace is not None:
        reason = _structural_problem(trace)
        if reason is not None:
            raise NonFiniteScoreError(f"{op} on {gf!r}: {reason}")
    where = "its weight"
    if trace is not None:
        for path, s in trace.site_scores():
            if mx.any(mx.logical_or(mx.isnan(s), s == mx.inf)).item() or (
                not allow_neg_inf and mx.any(s == -mx.inf).item()
            ):
                where = f"the choice at address {format_address(path)} (log density {s})"
                break
    raise NonFiniteScoreError(
        f"{op} on {gf!r}: non-finite log density at {where}. Check that the "
        "distribution's parameters are valid (e.g. a positive scale) and that observed "
        "values lie in its support; config.score_checks(False) disables this check."
    )


def _structural_problem(trace: Trace) -> str | None:
    """The first problem a trace (or one nested in it) reports through
    :meth:`Trace.nonfinite_reason` — e.g. a batched ``Switch`` index out of range,
    which cannot raise where it happens and gives a NaN score instead."""
    stack: list[Any] = [trace]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Trace):
            reason = node.nonfinite_reason()
            if reason is not None:
                return reason
            children, _ = node._tree_flatten()
            stack.extend(reversed(children))
        elif isinstance(node, (list, tuple)):
            stack.extend(reversed(node))
        elif isinstance(node, dict):
            stack.extend(node.values())
    return None
