"""Sum-product (and max-product) contraction of log-factors over enumeration axes.

A *factor* is an array in the enumeration layout ``E + D``: axis ``v < E`` belongs to
enumerated variable ``v`` (size ``K_v``, or 1 when the factor does not depend on it)
and the last ``D`` axes are *plate* axes (the element axes of vector-valued choices;
size 1 where the factor does not vary). The scope of a factor is read off its shape.

:func:`contract` computes ``log Σ_z Π_f exp(f(z))`` (summed over the plate axes too)
by tensor variable elimination (Obermeyer et al., 2019, "Tensor Variable Elimination
for Plated Factor Graphs"): plate levels are processed from the deepest; at each
level the variables that live exactly in that level's plates are eliminated by
variable elimination with a greedy min-size order (each elimination adds the factors
that mention the variable, broadcasting, and reduces its axis with ``logsumexp``);
the rest is summed over the plate axes the remaining variables do not need, and moves
to the enclosing level. A variable elimination never materialises more than the
factors of one elimination step, so a chain of ``T`` variables with ``K`` values costs
``O(T K²)``, not ``K^T``.

With ``record`` the combined factor of every eliminated variable is kept, so that the
variables can be sampled (or maximised, with ``op="max"``) backwards exactly:
:func:`backtrack`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import mlx.core as mx

from genmlx.core import StaticModelError

__all__ = ["Record", "backtrack", "contract", "scope"]


class _F(NamedTuple):
    t: mx.array
    vars: frozenset[int]
    plates: frozenset[int]


class Record(NamedTuple):
    """The combined factor of one eliminated variable (before its axis was reduced)."""

    var: int
    table: mx.array


def scope(t: mx.array, n_vars: int) -> tuple[frozenset[int], frozenset[int]]:
    """``(variables, plate axes)`` a factor in the layout depends on (by its shape)."""
    sh = t.shape
    return (
        frozenset(i for i in range(n_vars) if sh[i] > 1),
        frozenset(d for d in range(len(sh) - n_vars) if sh[n_vars + d] > 1),
    )


def _reduce(t: mx.array, axis: int, op: str) -> mx.array:
    if op == "max":
        return mx.max(t, axis=axis, keepdims=True)
    return mx.logsumexp(t, axis=axis, keepdims=True)


def _sizes(fs: Sequence[_F], n_vars: int) -> list[int]:
    """The size of every axis of the layout (the largest over the factors)."""
    nd = fs[0].t.ndim
    out = [1] * nd
    for f in fs:
        for i in f.vars:
            out[i] = max(out[i], f.t.shape[i])
        for d in f.plates:
            out[n_vars + d] = max(out[n_vars + d], f.t.shape[n_vars + d])
    return out


def _eliminate(
    fs: list[_F], variables: Sequence[int], n_vars: int, op: str, record: list[Record] | None
) -> list[_F]:
    todo = set(variables)
    if not todo or not fs:
        return fs
    sizes = _sizes(fs, n_vars)
    while todo:
        # greedy: the variable whose elimination builds the smallest table
        best, best_cost = -1, -1
        for v in sorted(todo):
            vs: set[int] = set()
            ps: set[int] = set()
            for f in fs:
                if v in f.vars:
                    vs |= f.vars
                    ps |= f.plates
            cost = math.prod(sizes[i] for i in vs) * math.prod(sizes[n_vars + d] for d in ps)
            if best < 0 or cost < best_cost:
                best, best_cost = v, cost
        todo.discard(best)
        touching = [f for f in fs if best in f.vars]
        if not touching:
            continue
        t = touching[0].t
        for f in touching[1:]:
            t = t + f.t
        if record is not None:
            record.append(Record(best, t))
        t = _reduce(t, best, op)
        vs2, ps2 = scope(t, n_vars)
        fs = [f for f in fs if best not in f.vars] + [_F(t, vs2, ps2)]
    return fs


def contract(
    factors: Sequence[mx.array],
    var_plates: Sequence[frozenset[int]],
    *,
    op: str = "sum",
    record: list[Record] | None = None,
    names: Callable[[int], str] | None = None,
) -> mx.array:
    """``log Σ_z exp(Σ_f f(z))`` (``op="sum"``) or ``max_z`` (``op="max"``), summed over
    the plate axes; a scalar.

    Args:
        factors: log-factors in the layout (all with the same number of axes).
        var_plates: for each variable, the plate axes its values vary along.
        op: ``"sum"`` (sum-product) or ``"max"`` (max-product).
        record: a list that receives the combined factor of each eliminated variable,
            in elimination order (for :func:`backtrack`).
        names: a function naming variable ``v`` in error messages.

    Raises:
        StaticModelError: a factor depends on a vector-valued variable as a whole (not
            element by element), or two variables in different plates meet in one
            factor (the plates are not nested).
    """
    n_vars = len(var_plates)
    name = names or (lambda v: f"variable {v}")
    items: list[_F] = []
    for t in factors:
        vs, ps = scope(t, n_vars)
        for v in vs:
            if not var_plates[v] <= ps:
                raise StaticModelError(
                    f"enumeration: a log density depends on {name(v)} as a whole vector; "
                    "a vector-valued discrete choice is enumerated element by element, so "
                    "every factor that reads it must keep its element axes (use "
                    "separately addressed scalar choices instead)"
                )
        items.append(_F(t, vs, ps))
    while True:
        levels = sorted({f.plates for f in items if f.plates}, key=lambda s: (-len(s), sorted(s)))
        if not levels:
            break
        level = levels[0]
        here = [f for f in items if f.plates == level]
        rest = [f for f in items if f.plates != level]
        local = sorted({v for f in here for v in f.vars if var_plates[v] == level})
        here = _eliminate(here, local, n_vars, op, record)
        for f in here:
            target: frozenset[int] = frozenset().union(*(var_plates[v] for v in f.vars))
            if not target < level:
                names_ = ", ".join(name(v) for v in sorted(f.vars))
                raise StaticModelError(
                    f"enumeration: {names_} vary along different element axes and meet in "
                    "one factor; their plates are not nested, so the sum cannot be split "
                    "element by element"
                )
            axes = [n_vars + d for d in sorted(level - target)]
            t = mx.sum(f.t, axis=axes, keepdims=True)
            vs, ps = scope(t, n_vars)
            rest.append(_F(t, vs, ps))
        items = rest
    remaining = sorted({v for f in items for v in f.vars})
    items = _eliminate(items, remaining, n_vars, op, record)
    total = items[0].t
    for f in items[1:]:
        total = total + f.t
    return total.reshape(())


def backtrack(
    records: Sequence[Record],
    n_vars: int,
    n_samples: int | None,
    key: mx.array | None,
) -> dict[int, mx.array]:
    """Assignments of every recorded variable, drawn (or maximised) backwards.

    Each variable's recorded table, indexed at the values of the variables eliminated
    after it, is its exact conditional (up to a constant) given them: drawing in
    reverse elimination order gives an exact joint sample (forward-filtering
    backward-sampling); taking the arg-max after a max-product pass gives the MAP
    assignment.

    Args:
        records: from :func:`contract` (``op="sum"`` to sample, ``"max"`` for MAP).
        n_vars: the number of variables in the layout.
        n_samples: draws (``None``: arg-max, one assignment).
        key: PRNG key (sampling).

    Returns:
        ``{variable: index array}``, each of shape ``(S,) + layout`` with size 1 on
        every variable axis (``S = n_samples`` or 1), sizes >1 on its plate axes.
    """
    s = 1 if n_samples is None else n_samples
    assigned: dict[int, mx.array] = {}
    keys = (
        mx.random.split(key, max(len(records), 1))
        if (n_samples is not None and key is not None)
        else None
    )
    for i, rec in enumerate(reversed(records)):
        t = rec.table[None]
        vs, _ = scope(rec.table, n_vars)
        for u in vs:
            if u == rec.var:
                continue
            idx = assigned[u]
            t = mx.take_along_axis(t, idx, axis=1 + u)
        if n_samples is None:
            choice = mx.argmax(t, axis=1 + rec.var)
        else:
            assert keys is not None
            shape = list(t.shape)
            shape[0] = s
            t = mx.broadcast_to(t, shape)
            # Gumbel-max (mx.random.categorical has no vmap rule over its logits)
            g = mx.random.gumbel(tuple(shape), key=keys[i])
            choice = mx.argmax(mx.where(t > -mx.inf, t + g, -mx.inf), axis=1 + rec.var)
        assigned[rec.var] = mx.expand_dims(choice.astype(mx.int32), 1 + rec.var)
    return assigned
