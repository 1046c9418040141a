"""Scan: Gen.jl-style numbers, incremental re-execution with VectorDiff, batching, errors."""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from genmlx.combinators.scan import Scan
from genmlx.combinators.sequence import ScanTrace
from genmlx.core import (
    ChoiceMap,
    ConstraintError,
    NoChange,
    Selection,
    UnknownChange,
    VectorDiff,
    choicemap,
    gen,
    runtime,
    select,
)
from genmlx.core.diff import Diff
from genmlx.core.errors import AddressError
from genmlx.core.testing import check_gfi_laws
from genmlx.core.testing.models import normal

S_LEVEL, S_OBS = 1.0, 0.5
COUNT = {"n": 0}


def lp(v: float, mu: float, s: float) -> float:
    """log N(v; mu, s) in plain math."""
    return -0.5 * ((v - mu) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)


def st(tr: Any) -> ScanTrace:
    """The trace as a ScanTrace (the GFI methods are typed as returning Trace)."""
    assert isinstance(tr, ScanTrace)
    return tr


def f(x: Any) -> float:
    return float(np.asarray(x))


@gen
def level_step(level: Any, x: Any) -> Any:
    """A local-level model with a known input ``x``: carry = level, out = y."""
    COUNT["n"] += 1
    level = normal(level, S_LEVEL) @ "level"
    y = normal(level + x, S_OBS) @ "y"
    return level, y


SCAN = Scan(level_step)
C0 = mx.array(0.0)


def full_score(levels: list[float], ys: list[float], xs: list[float], c0: float = 0.0) -> float:
    total, prev = 0.0, c0
    for lv, y, x in zip(levels, ys, xs):
        total += lp(lv, prev, S_LEVEL) + lp(y, lv + x, S_OBS)
        prev = lv
    return total


def values(tr: Any) -> tuple[list[float], list[float]]:
    n = st(tr).n_steps
    return [f(tr[(t, "level")]) for t in range(n)], [f(tr[(t, "y")]) for t in range(n)]


def counted(fn: Any) -> int:
    COUNT["n"] = 0
    fn()
    return COUNT["n"]


XS = [0.0, 1.0, -1.0, 0.5]


def xs_arr(xs: list[float]) -> mx.array:
    return mx.array(xs, dtype=mx.float32)


# ---------------------------------------------------------------------------- numbers
def test_assess_and_retval() -> None:
    levels, ys = [0.1, 0.4, -0.3, 0.0], [0.2, 1.2, -1.5, 0.7]
    cm = choicemap({(t, k): v for t in range(4) for k, v in (("level", levels[t]), ("y", ys[t]))})
    ld, (carry, outs) = SCAN.assess((C0, xs_arr(XS)), cm)
    assert f(ld) == pytest.approx(full_score(levels, ys, XS), abs=1e-5)
    assert f(carry) == pytest.approx(0.0)
    np.testing.assert_allclose(np.asarray(outs), ys, rtol=1e-6)


def test_simulate_and_generate_partial() -> None:
    tr = SCAN.simulate((C0, xs_arr(XS)), key=mx.random.key(0))
    levels, ys = values(tr)
    assert f(tr.score) == pytest.approx(full_score(levels, ys, XS), abs=1e-4)
    carry, outs = tr.retval
    assert f(carry) == levels[-1] and outs.shape == (4,)
    cons = choicemap({(1, "level"): 0.3, (3, "y"): 2.0})
    tr, w = SCAN.generate((C0, xs_arr(XS)), cons, key=mx.random.key(1))
    levels, ys = values(tr)
    expected = lp(0.3, levels[0], S_LEVEL) + lp(2.0, levels[3] + XS[3], S_OBS)
    assert f(w) == pytest.approx(expected, abs=1e-5)


def test_update_one_step_and_length_changes() -> None:
    xs = xs_arr(XS)
    tr = SCAN.simulate((C0, xs), key=mx.random.key(2))
    levels, ys = values(tr)
    new, w, rd, discard = SCAN.update(tr, choicemap({(2, "level"): 1.0}), key=mx.random.key(3))
    lv2 = [levels[0], levels[1], 1.0, levels[3]]
    assert f(w) == pytest.approx(full_score(lv2, ys, XS) - full_score(levels, ys, XS), abs=1e-4)
    assert discard.addresses() == [(2, "level")] and rd is UnknownChange
    # extend by one step with a constrained observation (VectorDiff on xs)
    xs5 = [*XS, 2.0]
    up, w, _, discard = SCAN.update(
        tr,
        choicemap({(4, "y"): 1.0}),
        (C0, xs_arr(xs5)),
        (NoChange, VectorDiff(5, 4, {})),
        key=mx.random.key(4),
    )
    lv5, ys5 = values(up)
    assert lv5[:4] == levels and ys5[:4] == ys and discard.is_empty
    assert f(w) == pytest.approx(lp(1.0, lv5[4] + 2.0, S_OBS), abs=1e-5)
    assert f(up.score) == f(tr.score + st(up).steps[4].score)
    assert up.retval[1].shape == (5,)
    # shrink to two steps: subtract the removed steps, discard their choices
    down, w, _, discard = SCAN.update(
        up, None, (C0, xs_arr(XS[:2])), (NoChange, VectorDiff(2, 5, {})), key=mx.random.key(5)
    )
    removed = full_score(lv5, ys5, xs5) - full_score(lv5[:2], ys5[:2], XS[:2])
    assert f(w) == pytest.approx(-removed, abs=1e-4)
    assert sorted(map(str, discard.addresses())) == sorted(
        str((t, k)) for t in (2, 3, 4) for k in ("level", "y")
    )
    assert f(down.score) == pytest.approx(full_score(lv5[:2], ys5[:2], XS[:2]), abs=1e-4)


def test_update_changed_x_and_init_carry() -> None:
    tr = SCAN.simulate((C0, xs_arr(XS)), key=mx.random.key(6))
    levels, ys = values(tr)
    xs2 = list(XS)
    xs2[1] = 3.0
    new, w, _, _ = SCAN.update(
        tr, None, (C0, xs_arr(xs2)), (NoChange, VectorDiff(4, 4, {1: UnknownChange}))
    )
    assert f(w) == pytest.approx(
        lp(ys[1], levels[1] + 3.0, S_OBS) - lp(ys[1], levels[1] + 1.0, S_OBS), abs=1e-5
    )
    new, w, _, _ = SCAN.update(tr, None, (mx.array(1.0), xs_arr(XS)), (UnknownChange, NoChange))
    assert f(w) == pytest.approx(
        lp(levels[0], 1.0, S_LEVEL) - lp(levels[0], 0.0, S_LEVEL), abs=1e-5
    )


def test_regenerate_and_project() -> None:
    tr = SCAN.simulate((C0, xs_arr(XS)), key=mx.random.key(7))
    levels, ys = values(tr)
    new, w, _ = SCAN.regenerate(tr, select((3, "level")), key=mx.random.key(8))
    lv2, ys2 = values(new)
    assert lv2[:3] == levels[:3] and ys2 == ys and lv2[3] != levels[3]
    expected = lp(ys[3], lv2[3] + XS[3], S_OBS) - lp(ys[3], levels[3] + XS[3], S_OBS)
    assert f(w) == pytest.approx(expected, abs=1e-5)
    got = SCAN.project(tr, select((0, "y"), 2))
    exp = lp(ys[0], levels[0] + XS[0], S_OBS) + lp(levels[2], levels[1], S_LEVEL)
    exp += lp(ys[2], levels[2] + XS[2], S_OBS)
    assert f(got) == pytest.approx(exp, abs=1e-5)
    assert f(SCAN.project(tr, Selection.all())) == pytest.approx(f(tr.score), abs=1e-5)


# ---------------------------------------------------------------------------- incremental
def test_incremental_counts() -> None:
    xs = mx.random.normal((50,), key=mx.random.key(9))
    tr = SCAN.simulate((C0, xs), key=mx.random.key(10))
    xs51 = mx.concatenate([xs, mx.array([0.5])])
    diffs: tuple[Diff, ...] = (NoChange, VectorDiff(51, 50, {}))
    assert counted(lambda: SCAN.update(tr, None, (C0, xs51), diffs)) == 1
    assert counted(lambda: SCAN.update(tr, choicemap({(40, "level"): 0.0}))) == 10
    assert counted(lambda: SCAN.regenerate(tr, select((45, "y")))) == 5
    assert counted(lambda: SCAN.update(tr, None, (C0, xs), (NoChange, NoChange))) == 0
    # a changed x at step 48 re-runs 48 and 49 (the carry changes at 48)
    diffs = (NoChange, VectorDiff(50, 50, {48: UnknownChange}))
    assert counted(lambda: SCAN.update(tr, None, (C0, xs), diffs)) == 2
    # unknown change of xs: every step
    assert counted(lambda: SCAN.update(tr, None, (C0, xs + 0.0), (NoChange, UnknownChange))) == 50


# ---------------------------------------------------------------------------- laws
@gen
def small_scan_kernel(c: Any, x: Any) -> Any:
    c = normal(0.5 * c + x, 1.0) @ "c"
    out = normal(c, 0.3) @ ("obs", 0)
    return c, out


def test_gfi_laws() -> None:
    check_gfi_laws(
        Scan(small_scan_kernel), (mx.array(0.0), mx.array([0.1, -0.2, 0.3])), max_examples=3
    )


# ---------------------------------------------------------------------------- batching
P = 3


def particle(cm: ChoiceMap, i: int) -> ChoiceMap:
    return cm.map(lambda v: v[i]).with_batch_shape(())


def assert_same(a: ChoiceMap, b: ChoiceMap) -> None:
    assert sorted(map(str, a.addresses())) == sorted(map(str, b.addresses()))
    for path, v in a.leaves():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(b[path]))


@gen
def noise(mu: Any) -> Any:
    return normal(mu, 0.2) @ "e"


@gen
def tree_step(carry: Any, x: Any) -> Any:
    pos, vel = carry
    vel = vel + noise(x["drift"]) @ "acc"
    out = normal(pos + vel, x["scale"]) @ "obs"
    return (pos + vel, vel), out


TREE = Scan(tree_step)


@gen
def scan_model(xs: Any) -> Any:
    v0 = normal(0.0, 1.0) @ "v0"
    carry, outs = TREE((mx.array(0.0), v0), xs) @ "scan"
    return carry[0]


def test_batched_three_levels_tree_xs() -> None:
    xs = {"drift": mx.array([0.0, 0.1, 0.2, 0.3]), "scale": mx.array([1.0, 1.0, 0.5, 0.5])}
    k1, k2 = mx.random.key(20), mx.random.key(21)
    obs = choicemap({("scan", 1, "obs"): 0.5, ("scan", 2, "acc", "e"): 0.1})
    vt, vw = scan_model.vgenerate((xs,), obs, P, key=k1)
    sub = vt.get_subtrace("scan")  # type: ignore[attr-defined]
    assert isinstance(sub, ScanTrace) and sub.retval[1].shape == (P, 4)
    more = choicemap({("scan", 3, "obs"): 0.0})
    vu, vuw, _, vd = scan_model.update(vt, more, key=k2)
    keys1, keys2 = mx.random.split(k1, P), mx.random.split(k2, P)
    for i in range(P):
        t, w = scan_model.generate((xs,), obs, key=keys1[i])
        assert_same(particle(vt.get_choices(), i), t.get_choices())
        np.testing.assert_allclose(np.asarray(vw[i]), np.asarray(w), rtol=1e-6, atol=1e-6)
        u, uw, _, d = scan_model.update(t, more, key=keys2[i])
        assert_same(particle(vu.get_choices(), i), u.get_choices())
        np.testing.assert_allclose(np.asarray(vuw[i]), np.asarray(uw), rtol=1e-6, atol=1e-6)
        assert_same(particle(vd, i), d)
        np.testing.assert_array_equal(np.asarray(vu.retval[i]), np.asarray(u.retval))


def test_batched_vsimulate_and_regenerate() -> None:
    xs = xs_arr(XS)
    k1, k2 = mx.random.key(30), mx.random.key(31)
    vt = SCAN.vsimulate((C0, xs), P, key=k1)
    vr, vrw, _ = SCAN.regenerate(vt, select((1, "level")), key=k2)
    keys1, keys2 = mx.random.split(k1, P), mx.random.split(k2, P)
    for i in range(P):
        t = SCAN.simulate((C0, xs), key=keys1[i])
        assert_same(particle(vt.get_choices(), i), t.get_choices())
        r, rw, _ = SCAN.regenerate(t, select((1, "level")), key=keys2[i])
        assert_same(particle(vr.get_choices(), i), r.get_choices())
        np.testing.assert_allclose(np.asarray(vrw[i]), np.asarray(rw), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------- errors
@gen
def bad_kernel(c: Any, x: Any) -> Any:
    return normal(c + x, 1.0) @ "c"


def test_errors() -> None:
    xs = xs_arr(XS)
    with pytest.raises(ConstraintError, match=r"\(4, 'y'\).*4 steps"):
        SCAN.generate((C0, xs), choicemap({(4, "y"): 0.0}))
    with pytest.raises(ConstraintError, match=r"'level'.*not a step"):
        SCAN.generate((C0, xs), choicemap({"level": 0.0}))
    with pytest.raises(TypeError, match=r"must return \(carry, out\)"):
        Scan(bad_kernel).simulate((C0, xs))
    with pytest.raises(ValueError, match="same leading"):
        SCAN.simulate((C0, {"a": xs, "b": mx.zeros((3,))}))
    with pytest.raises(TypeError, match="takes \\(init_carry, xs\\)"):
        SCAN.simulate((C0,))
    tr = SCAN.simulate((C0, xs), key=mx.random.key(0))
    with pytest.raises(ValueError, match="VectorDiff for xs"):
        SCAN.update(tr, None, (C0, xs), (NoChange, VectorDiff(7, 4, {})))
    with pytest.raises(AddressError, match=r"\(4, 'y'\)"):
        SCAN.regenerate(tr, select((4, "y")))
    assert runtime.active_run() is None
