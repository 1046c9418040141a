"""Diffs and incremental update: unchanged sub-calls are not re-run."""

from __future__ import annotations

import math
import pickle

import mlx.core as mx
import pytest

from genmlx.core import (
    Diff,
    NoChange,
    UnknownChange,
    VectorDiff,
    analyze,
    choicemap,
    gen,
    select,
)
from genmlx.core.diff import diff_args, no_change_args
from genmlx.core.testing.models import normal

K = mx.random.key
TOL = {"rel": 1e-5, "abs": 1e-5}


def ln(x: float, mu: float, sigma: float) -> float:
    z = (x - mu) / sigma
    return -0.5 * z * z - math.log(sigma) - 0.5 * math.log(2.0 * math.pi)


def f(x: mx.array) -> float:
    return float(x.item())


# --------------------------------------------------------------------------- diff values
def test_no_change_and_unknown_change():
    assert NoChange.is_no_change() is True
    assert UnknownChange.is_no_change() is False
    assert isinstance(NoChange, Diff) and isinstance(UnknownChange, Diff)
    assert repr(NoChange) == "NoChange" and repr(UnknownChange) == "UnknownChange"
    assert pickle.loads(pickle.dumps(NoChange)) is NoChange
    assert pickle.loads(pickle.dumps(UnknownChange)) is UnknownChange
    assert Diff().is_no_change() is False


def test_vector_diff():
    assert VectorDiff(3, 3, {}).is_no_change()
    assert not VectorDiff(4, 3, {}).is_no_change()
    assert not VectorDiff(2, 3, {}).is_no_change()
    assert not VectorDiff(3, 3, {1: UnknownChange}).is_no_change()
    updated = {0: UnknownChange}
    vd = VectorDiff(new_length=4, prev_length=3, updated=updated)
    updated[2] = UnknownChange
    assert vd.updated == {0: UnknownChange}  # a copy
    assert (vd.new_length, vd.prev_length) == (4, 3)
    assert repr(vd) == "VectorDiff(new_length=4, prev_length=3, updated={0: UnknownChange})"


def test_diff_args():
    arr = mx.array([1.0, 2.0])
    assert diff_args((1, 2.0, "s", None, True), (1, 2.0, "s", None, True)) == (NoChange,) * 5
    assert diff_args((1, 2.0, "s"), (2, 2.5, "t")) == (UnknownChange,) * 3
    assert diff_args((arr,), (arr,)) == (NoChange,)
    # equal values in a different array object: conservatively changed (never evaluates)
    assert diff_args((arr,), (mx.array([1.0, 2.0]),)) == (UnknownChange,)
    assert diff_args(((1, (2, "x")), [3.0]), ((1, (2, "x")), [3.0])) == (NoChange, NoChange)
    assert diff_args(((1, 2),), ((1, 3),)) == (UnknownChange,)
    assert diff_args((1,), (1.0,)) == (UnknownChange,)  # different types
    assert diff_args((1,), (True,)) == (UnknownChange,)
    assert diff_args((1, 2), (1,)) == (UnknownChange,)  # length change
    assert diff_args((), ()) == ()
    assert no_change_args((1, 2, 3)) == (NoChange, NoChange, NoChange)


# --------------------------------------------------------------------------- skipping work
COUNT = {"static": 0, "dep": 0}


@gen
def static_sub(m):
    COUNT["static"] += 1
    return normal(m, 1.0) @ "z"


@gen
def dep_sub(m):
    COUNT["dep"] += 1
    return normal(m, 1.0) @ "w"


@gen
def parent(k):
    a = normal(0.0, 1.0) @ "a"
    static_sub(1.5) @ "s"  # a constant argument: NoChange on every re-run
    dep_sub(a) @ "t"  # depends on a
    for i in range(k):
        normal(a, 2.0) @ ("y", i)
    return a


FULL = {"a": 0.5, ("s", "z"): 1.0, ("t", "w"): -1.0, ("y", 0): 2.0, ("y", 1): 0.0}


def _trace():
    tr, _ = parent.generate((2,), choicemap(FULL), key=K(0))
    # the first update of a static model analyses it (running its body, and its
    # sub-calls' bodies, twice); do that before counting re-executions
    analyze(parent, (2,))
    return tr


def _counts():
    return COUNT["static"], COUNT["dep"]


def test_update_does_not_rerun_an_unchanged_subcall():
    tr = _trace()
    s0, d0 = _counts()
    new, w, _, disc = parent.update(tr, choicemap({"a": 0.25}), key=K(1))
    s1, d1 = _counts()
    assert s1 == s0  # static_sub's args are unchanged and nothing under it is constrained
    assert d1 == d0 + 1  # dep_sub's argument changed: re-run
    assert new.get_subtrace("s") is tr.get_subtrace("s")
    assert new.get_subtrace("t") is not tr.get_subtrace("t")
    expected = (
        (ln(0.25, 0, 1) - ln(0.5, 0, 1))
        + (ln(-1.0, 0.25, 1) - ln(-1.0, 0.5, 1))
        + (ln(2.0, 0.25, 2) - ln(2.0, 0.5, 2))
        + (ln(0.0, 0.25, 2) - ln(0.0, 0.5, 2))
    )
    assert f(w) == pytest.approx(expected, **TOL)
    assert {a: v.item() for a, v in disc} == {"a": 0.5}
    assert f(new.score) == pytest.approx(f(tr.score) + expected, **TOL)


def test_update_reruns_a_subcall_with_constraints_under_it():
    tr = _trace()
    s0, d0 = _counts()
    new, w, _, disc = parent.update(tr, choicemap({("s", "z"): 3.0}), key=K(2))
    assert _counts() == (s0 + 1, d0)  # parent re-runs; dep_sub's arg is the same array
    assert f(w) == pytest.approx(ln(3.0, 1.5, 1) - ln(1.0, 1.5, 1), **TOL)
    assert {a: v.item() for a, v in disc} == {("s", "z"): 1.0}


def test_update_with_changed_parent_args_skips_unchanged_subcalls():
    tr = _trace()
    s0, d0 = _counts()
    new, w, _, _ = parent.update(tr, None, args=(1,), key=K(3))
    assert _counts() == (s0, d0)  # a is kept (same array object), so dep_sub is NoChange too
    assert f(w) == pytest.approx(-ln(0.0, 0.5, 2), **TOL)


def test_update_no_change_runs_nothing():
    tr = _trace()
    s0, d0 = _counts()
    new, w, rd, _ = parent.update(tr, None, key=K(4))
    new2, w2, rd2, _ = parent.update(tr, None, args=(2,), argdiffs=(NoChange,), key=K(4))
    assert _counts() == (s0, d0)
    assert new is tr and new2 is tr
    assert f(w) == 0.0 and f(w2) == 0.0
    assert rd is NoChange and rd2 is NoChange


def test_regenerate_skips_unselected_unchanged_subcalls():
    tr = _trace()
    s0, d0 = _counts()
    new, w, _ = parent.regenerate(tr, select("a"), key=K(5))
    assert _counts() == (s0, d0 + 1)
    a2 = f(new["a"])
    expected = (
        (ln(-1.0, a2, 1) - ln(-1.0, 0.5, 1))
        + (ln(2.0, a2, 2) - ln(2.0, 0.5, 2))
        + (ln(0.0, a2, 2) - ln(0.0, 0.5, 2))
    )
    assert f(w) == pytest.approx(expected, **TOL)
    new, w, _ = parent.regenerate(tr, select(("s", "z")), key=K(6))
    assert _counts() == (s0 + 1, d0 + 1)
    assert f(w) == 0.0


def test_explicit_argdiffs_force_a_rerun():
    tr = _trace()
    s0, d0 = _counts()
    # the same arg values, but the caller says they changed: the body runs again
    new, w, rd, _ = parent.update(tr, None, args=(2,), argdiffs=(UnknownChange,), key=K(7))
    assert _counts() == (s0, d0)  # sub-calls themselves are still unchanged
    assert f(w) == 0.0
    # the model is static and analysed: its return value (``a``) depends on no
    # argument, so the return-value diff is precise
    assert rd is NoChange
    assert new is not tr
    assert {a: v.item() for a, v in new.get_choices()} == FULL


def test_subcall_with_array_argument_identity():
    calls = {"n": 0}

    @gen
    def sub(xs):
        calls["n"] += 1
        return normal(mx.sum(xs), 1.0) @ "v"

    @gen
    def top(xs):
        normal(0.0, 1.0) @ "u"
        return sub(xs) @ "s"

    xs = mx.array([1.0, 2.0])
    tr, _ = top.generate((xs,), {"u": 0.0, ("s", "v"): 3.0}, key=K(0))
    analyze(top, (xs,))  # analysing runs the bodies: do it before counting
    n0 = calls["n"]
    new, w, _, _ = top.update(tr, {"u": 1.0}, args=(xs,), key=K(1))
    assert calls["n"] == n0  # the same array object: NoChange
    assert f(w) == pytest.approx(ln(1.0, 0, 1) - ln(0.0, 0, 1), **TOL)
    xs2 = mx.array([1.0, 4.0])
    new, w, _, _ = top.update(tr, None, args=(xs2,), key=K(2))
    assert calls["n"] == n0 + 1
    assert f(w) == pytest.approx(ln(3.0, 5.0, 1) - ln(3.0, 3.0, 1), **TOL)


def test_argdiff_validation():
    tr = _trace()
    with pytest.raises(ValueError, match="argdiffs"):
        parent.update(tr, None, args=None, argdiffs=(UnknownChange,), key=K(0))
    with pytest.raises(ValueError, match="argdiffs"):
        parent.update(tr, None, args=(2,), argdiffs=(NoChange, NoChange), key=K(0))
