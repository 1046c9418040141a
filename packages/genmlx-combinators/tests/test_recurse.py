"""Recurse: closed-form weights, shape changes, incremental reuse, batching, laws, errors."""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import pytest

from genmlx.combinators.recurse import Recurse, RecurseTrace
from genmlx.core import Selection, choicemap, gen, runtime, select
from genmlx.core.diff import NoChange, UnknownChange
from genmlx.core.errors import AddressError, BatchedControlFlowError, ConstraintError
from genmlx.core.runtime import active_run
from genmlx.core.testing import check_gfi_laws
from genmlx.core.testing.models import bernoulli, normal
from genmlx.core.trace import Trace

TOL = 1e-5
LOG_HALF = math.log(0.5)
P, A = "production", "aggregation"


def logn(x: float, mu: float, sigma: float) -> float:
    z = (x - mu) / sigma
    return -0.5 * z * z - math.log(sigma) - 0.5 * math.log(2 * math.pi)


def rt(tr: Trace) -> RecurseTrace:
    assert isinstance(tr, RecurseTrace)
    return tr


def f(x: Any) -> float:
    return float(x)


COUNTS = {"prod": 0, "agg": 0}


def reset() -> None:
    COUNTS.update(prod=0, agg=0)


# A full binary tree of depth `depth`: x_i ~ N(0, 1) at each node; w_i ~ N(x_i + Σ w_child, 1).
@gen
def binary(depth: int) -> Any:
    COUNTS["prod"] += 1
    x = normal(0.0, 1.0) @ "x"
    return x, ([depth - 1, depth - 1] if depth > 0 else [])


@gen
def noisy_sum(depth: int, x: Any, ws: list[Any]) -> Any:
    COUNTS["agg"] += 1
    return normal(x + sum(ws, mx.array(0.0)), 1.0) @ "w"


TREE = Recurse(binary, noisy_sum, max_branch=2)


# `n` leaf children (inputs 0) below the root; the aggregation is deterministic.
@gen
def fan(n: int) -> Any:
    x = normal(0.0, 1.0) @ "x"
    return x, [0] * n


@gen
def plain_sum(n: int, x: Any, ws: list[Any]) -> Any:
    return x + sum(ws, mx.array(0.0))


FAN = Recurse(fan, plain_sum, max_branch=3)


# A random shape: a node with depth > 0 grows two children when its coin says so.
@gen
def coin_grow(depth: int) -> Any:
    x = normal(0.0, 1.0) @ "x"
    grow = bernoulli(0.5) @ "grow"
    if depth > 0 and grow:
        return x, [depth - 1, depth - 1]
    return x, []


RANDOM_TREE = Recurse(coin_grow, noisy_sum, max_branch=2)

# depth-1 binary tree values: node -> (x, w)
VALS = {0: (0.1, 0.7), 1: (-0.4, 0.2), 2: (0.9, 1.5)}


def full(vals: dict[int, tuple[float, float]] = VALS) -> Any:
    return choicemap(
        {k: v for i, (x, w) in vals.items() for k, v in (((i, P, "x"), x), ((i, A, "w"), w))}
    )


def tree_logp(vals: dict[int, tuple[float, float]]) -> float:
    (x0, w0), (x1, w1), (x2, w2) = vals[0], vals[1], vals[2]
    return (
        logn(x0, 0, 1) + logn(x1, 0, 1) + logn(x2, 0, 1)
        + logn(w1, x1, 1) + logn(w2, x2, 1) + logn(w0, x0 + w1 + w2, 1)
    )  # fmt: skip


# ---------------------------------------------------------------------------- layout/assess
def test_layout_and_indices() -> None:
    tr = TREE.simulate((2,), key=mx.random.key(0))
    assert isinstance(tr, RecurseTrace) and rt(tr).nodes == list(range(7))
    expected = sorted(str((i, k, a)) for i in range(7) for k, a in ((P, "x"), (A, "w")))
    assert sorted(map(str, tr.get_choices().addresses())) == expected
    assert [TREE.child(1, k) for k in range(2)] == [3, 4] and TREE.parent(4) == 1
    assert f(tr.retval) == f(tr[(0, A, "w")])


def test_assess_closed_form() -> None:
    ld, rv = TREE.assess((1,), full())
    assert abs(f(ld) - tree_logp(VALS)) < TOL
    assert abs(f(rv) - 0.7) < TOL


def test_generate_partial_constraints() -> None:
    cm = choicemap({(1, P, "x"): -0.4, (0, A, "w"): 0.7})
    tr, w = TREE.generate((1,), cm, key=mx.random.key(1))
    w1, x0 = f(tr[(1, A, "w")]), f(tr[(0, P, "x")])
    w2 = f(tr[(2, A, "w")])
    assert abs(f(w) - (logn(-0.4, 0, 1) + logn(0.7, x0 + w1 + w2, 1))) < TOL
    vals = {i: (f(tr[(i, P, "x")]), f(tr[(i, A, "w")])) for i in range(3)}
    assert abs(f(tr.score) - tree_logp(vals)) < TOL


# ---------------------------------------------------------------------------- update
def test_update_constraint_weight_and_discard() -> None:
    tr, _ = TREE.generate((1,), full(), key=mx.random.key(0))
    new, w, rd, discard = TREE.update(tr, choicemap({(1, P, "x"): 0.3}), key=mx.random.key(1))
    expected = logn(0.3, 0, 1) - logn(-0.4, 0, 1) + logn(0.2, 0.3, 1) - logn(0.2, -0.4, 1)
    assert abs(f(w) - expected) < TOL
    assert discard.addresses() == [(1, P, "x")] and abs(f(discard[(1, P, "x")]) + 0.4) < TOL
    assert rd is UnknownChange
    vals = dict(VALS)
    vals[1] = (0.3, 0.2)
    assert abs(f(new.score) - tree_logp(vals)) < TOL


def test_update_is_incremental() -> None:
    tr = TREE.simulate((2,), key=mx.random.key(0))  # nodes 0..6; node 2 has children 5, 6
    reset()
    new, _, _, _ = TREE.update(tr, choicemap({(2, P, "x"): 0.0}), key=mx.random.key(1))
    # production re-runs at node 2 only; aggregation at node 2 and its ancestor 0
    assert COUNTS == {"prod": 1, "agg": 2}
    for i in (1, 3, 4, 5, 6):  # untouched subtrees are reused as they are
        assert rt(new).productions[i] is rt(tr).productions[i]
        assert rt(new).aggregations[i] is rt(tr).aggregations[i]
    assert rt(new).productions[0] is rt(tr).productions[0]
    reset()
    same, w, rd, discard = TREE.update(tr, None, key=mx.random.key(1))
    assert COUNTS == {"prod": 0, "agg": 0} and f(w) == 0.0 and rd is NoChange
    assert discard.is_empty and same is tr


def test_update_args_removes_and_adds_children() -> None:
    cm = choicemap({(0, P, "x"): 0.5, (1, P, "x"): 1.0, (2, P, "x"): -2.0})
    tr, _ = FAN.generate((2,), cm, key=mx.random.key(0))
    assert rt(tr).nodes == [0, 1, 2] and abs(f(tr.retval) - (-0.5)) < TOL
    # fewer children: node 2 removed, its score subtracted and its choice discarded
    new, w, rd, discard = FAN.update(tr, None, (1,), key=mx.random.key(1))
    assert rt(new).nodes == [0, 1]
    assert abs(f(w) - (-logn(-2.0, 0, 1))) < TOL
    assert discard.addresses() == [(2, P, "x")] and abs(f(discard[(2, P, "x")]) + 2.0) < TOL
    assert abs(f(new.retval) - 1.5) < TOL and rd is UnknownChange
    assert rt(new).productions[1] is rt(tr).productions[1]  # same input (0): reused
    # more children: node 2 sampled (adds 0), node 3 constrained (adds its density)
    more, w2, _, d2 = FAN.update(new, choicemap({(3, P, "x"): 0.25}), (3,), key=mx.random.key(2))
    assert rt(more).nodes == [0, 1, 2, 3] and d2.is_empty
    assert abs(f(w2) - logn(0.25, 0, 1)) < TOL
    x2 = f(more[(2, P, "x")])
    assert abs(f(more.score) - sum(logn(x, 0, 1) for x in (0.5, 1.0, x2, 0.25))) < TOL
    # back to the original with the discard: weight negates
    back, wb, _, _ = FAN.update(new, discard, (2,), key=mx.random.key(3))
    assert abs(f(wb) + f(w)) < TOL and abs(f(back.score) - f(tr.score)) < TOL


def test_update_shape_change_through_constraint() -> None:
    vals: dict[Any, Any] = {(0, P, "x"): 0.1, (0, P, "grow"): True, (0, A, "w"): 0.7}
    for i, (x, w_) in ((1, (-0.4, 0.2)), (2, (0.9, 1.5))):
        vals.update({(i, P, "x"): x, (i, P, "grow"): False, (i, A, "w"): w_})
    tr, _ = RANDOM_TREE.generate((1,), choicemap(vals), key=mx.random.key(0))
    assert rt(tr).nodes == [0, 1, 2]
    new, w, _, discard = RANDOM_TREE.update(
        tr, choicemap({(0, P, "grow"): False}), key=mx.random.key(1)
    )
    assert rt(new).nodes == [0]
    removed = sum(logn(x, 0, 1) + LOG_HALF + logn(w_, x, 1) for x, w_ in ((-0.4, 0.2), (0.9, 1.5)))
    expected = -removed + logn(0.7, 0.1, 1) - logn(0.7, 0.1 + 0.2 + 1.5, 1)
    assert abs(f(w) - expected) < TOL
    assert sorted(map(str, discard.addresses())) == sorted(
        map(str, [(0, P, "grow"), *[(i, k, a) for i in (1, 2) for k, a in vals_of()]])
    )
    assert abs(f(new.score) - (logn(0.1, 0, 1) + LOG_HALF + logn(0.7, 0.1, 1))) < TOL


def vals_of() -> list[tuple[str, str]]:
    return [(P, "x"), (P, "grow"), (A, "w")]


# ---------------------------------------------------------------------------- regenerate/project
def test_regenerate_weight() -> None:
    tr, _ = TREE.generate((1,), full(), key=mx.random.key(0))
    reset()
    new, w, _ = TREE.regenerate(tr, select((1, P, "x")), key=mx.random.key(4))
    x1 = f(new[(1, P, "x")])
    assert abs(f(w) - (logn(0.2, x1, 1) - logn(0.2, -0.4, 1))) < TOL
    assert COUNTS == {"prod": 1, "agg": 2}  # node 1's kernels, then the root's aggregation
    assert rt(new).productions[2] is rt(tr).productions[2]
    same, w0, rd = TREE.regenerate(tr, Selection.none(), key=mx.random.key(4))
    assert f(w0) == 0.0 and rd is NoChange and same is tr


def test_regenerate_shape_change_adds_zero_for_new_and_removed() -> None:
    # selecting the root's coin may add or remove both children; only kept unselected
    # choices (the root's x and w) contribute.
    tr = RANDOM_TREE.simulate((1,), key=mx.random.key(11))
    for seed in range(6):
        new, w, _ = RANDOM_TREE.regenerate(tr, select((0, P, "grow")), key=mx.random.key(seed))
        ws = [f(new[(c, A, "w")]) for c in rt(new).nodes if c > 0]
        old_ws = [f(tr[(c, A, "w")]) for c in rt(tr).nodes if c > 0]
        x0, w0 = f(tr[(0, P, "x")]), f(tr[(0, A, "w")])
        assert abs(f(w) - (logn(w0, x0 + sum(ws), 1) - logn(w0, x0 + sum(old_ws), 1))) < 1e-4
        if rt(new).nodes == rt(tr).nodes:  # the children's choices were kept
            assert all(
                rt(new).productions[c] is rt(tr).productions[c] for c in rt(tr).nodes if c > 0
            )


def test_project() -> None:
    tr, _ = TREE.generate((1,), full(), key=mx.random.key(0))
    assert abs(f(TREE.project(tr, select((1, P)))) - logn(-0.4, 0, 1)) < TOL
    assert abs(f(TREE.project(tr, select(1))) - (logn(-0.4, 0, 1) + logn(0.2, -0.4, 1))) < TOL
    assert abs(f(TREE.project(tr, Selection.all())) - tree_logp(VALS)) < TOL
    assert f(TREE.project(tr, Selection.none())) == 0.0


# ---------------------------------------------------------------------------- laws
def test_laws_deterministic_shape() -> None:
    check_gfi_laws(TREE, (1,), max_examples=3)


def test_laws_fan() -> None:
    check_gfi_laws(FAN, (2,), max_examples=3)


def test_laws_random_shape() -> None:
    check_gfi_laws(RANDOM_TREE, (2,), max_examples=3, batched=False)


# ---------------------------------------------------------------------------- batching
def test_vsimulate_deterministic_shape_matches_particles() -> None:
    key, n = mx.random.key(5), 3
    vt = TREE.vsimulate((1,), n, key=key)
    assert vt.batch_shape == (n,) and rt(vt).productions[1].batch_shape == (n,)
    keys = mx.random.split(key, n)
    for i in range(n):
        tr = TREE.simulate((1,), key=keys[i])
        for addr, v in tr.get_choices().leaves():
            assert f(vt.get_choices()[addr][i]) == f(v)
        assert f(vt.score[i]) == f(tr.score) and f(vt.retval[i]) == f(tr.retval)


def test_batched_update_and_generate() -> None:
    key, n = mx.random.key(6), 3
    vt = TREE.vsimulate((1,), n, key=key)
    new, w, _, discard = TREE.update(vt, choicemap({(2, P, "x"): 0.5}), key=mx.random.key(1))
    keys = mx.random.split(key, n)
    for i in range(n):
        tr = TREE.simulate((1,), key=keys[i])
        one, w1, _, d1 = TREE.update(tr, choicemap({(2, P, "x"): 0.5}), key=mx.random.key(1))
        assert abs(f(w[i]) - f(w1)) < TOL and abs(f(new.score[i]) - f(one.score)) < TOL
        assert f(discard[(2, P, "x")][i]) == f(d1[(2, P, "x")])
    gt, gw = TREE.vgenerate((1,), vt.get_choices(), n, key=mx.random.key(2))
    for i in range(n):
        assert abs(f(gw[i]) - f(vt.score[i])) < TOL


def test_random_shape_under_batching_is_a_clear_error() -> None:
    with pytest.raises(BatchedControlFlowError) as info:
        RANDOM_TREE.vsimulate((2,), 4, key=mx.random.key(0))
    msg = str(info.value)
    assert "Recurse(coin_grow, noisy_sum)" in msg and "at node 0" in msg
    assert "number of children" in msg and "one at a time" in msg


# ---------------------------------------------------------------------------- errors
def test_too_many_children() -> None:
    @gen
    def wide(n: int) -> Any:
        return normal(0.0, 1.0) @ "x", [0] * n

    r = Recurse(wide, plain_sum, max_branch=2)
    with pytest.raises(ValueError, match=r"at node 0: .* returned 3 children but max_branch is 2"):
        r.simulate((3,), key=mx.random.key(0))


def test_bad_production_retval() -> None:
    @gen
    def bad(n: int) -> Any:
        return normal(0.0, 1.0) @ "x"

    with pytest.raises(TypeError, match=r"must return a pair \(u, child_args\)"):
        Recurse(bad, plain_sum, 2).simulate((1,), key=mx.random.key(0))


def test_bad_arguments_constraints_and_selections() -> None:
    with pytest.raises(TypeError, match="takes one argument"):
        TREE.simulate((1, 2), key=mx.random.key(0))
    with pytest.raises(ConstraintError, match="node 9"):
        TREE.generate((1,), choicemap({(9, P, "x"): 0.0}), key=mx.random.key(0))
    with pytest.raises(ConstraintError, match="neither 'production' nor 'aggregation'"):
        TREE.generate((1,), choicemap({(0, "prod", "x"): 0.0}), key=mx.random.key(0))
    with pytest.raises(ConstraintError, match="not at a node index"):
        TREE.assess((1,), choicemap({"x": 0.0}))
    tr = TREE.simulate((1,), key=mx.random.key(0))
    with pytest.raises(AddressError, match="not in the trace"):
        TREE.regenerate(tr, select((5, P)), key=mx.random.key(0))
    with pytest.raises(ValueError, match="max_branch must be a positive int"):
        Recurse(binary, noisy_sum, 0)


def test_lenient_mode_skips_address_checks() -> None:
    cm = choicemap({(9, P, "x"): 0.0, "elsewhere": 1.0, (1, P, "x"): 0.5})
    with runtime.lenient():
        tr, w = TREE.generate((1,), cm, key=mx.random.key(0))
        assert abs(f(w) - logn(0.5, 0, 1)) < TOL
        same, w0, _ = TREE.regenerate(tr, select("nowhere"), key=mx.random.key(1))
        assert f(w0) == 0.0


def test_exception_safety() -> None:
    @gen
    def failing(depth: int, x: Any, ws: list[Any]) -> Any:
        normal(0.0, 1.0) @ "w"
        if depth == 0:
            raise RuntimeError("boom in aggregation")
        return x

    r = Recurse(binary, failing, 2)
    with pytest.raises(RuntimeError, match="boom"):
        r.simulate((1,), key=mx.random.key(0))
    assert active_run() is None

    @gen
    def outer() -> Any:
        return r(1) @ "tree"

    with pytest.raises(RuntimeError, match="boom"):
        outer.simulate((), key=mx.random.key(0))
    assert active_run() is None
    with pytest.raises(ValueError, match="max_branch"):
        Recurse(binary, noisy_sum, 1).simulate((1,), key=mx.random.key(0))
    assert active_run() is None
