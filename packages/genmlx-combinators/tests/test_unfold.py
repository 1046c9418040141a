"""Unfold: Gen.jl-style numbers, incremental re-execution counts, batching, errors."""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from genmlx.combinators.sequence import UnfoldTrace
from genmlx.combinators.step_store import StepVector
from genmlx.combinators.unfold import Unfold
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
from genmlx.core.dsl import DynamicGenerativeFunction
from genmlx.core.errors import AddressError
from genmlx.core.gfi import UpdateResult
from genmlx.core.testing import check_gfi_laws
from genmlx.core.testing.models import normal

A = 0.8  # state transition coefficient (a param of the kernel)
Q, R = 1.0, 0.5  # transition and observation noise


def lp(v: float, mu: float, s: float) -> float:
    """log N(v; mu, s) in plain math."""
    return -0.5 * ((v - mu) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)


def st(tr: Any) -> UnfoldTrace:
    """The trace as a UnfoldTrace (the GFI methods are typed as returning Trace)."""
    assert isinstance(tr, UnfoldTrace)
    return tr


def f(x: Any) -> float:
    return float(np.asarray(x))


COUNT = {"n": 0}


@gen
def lg_step(t: int, x: Any, a: float) -> Any:
    COUNT["n"] += 1
    x = normal(a * x, Q) @ "x"
    normal(x, R) @ "y"
    return x


def step_score(x_prev: float, x: float, y: float, a: float = A) -> float:
    return lp(x, a * x_prev, Q) + lp(y, x, R)


def values(tr: Any) -> tuple[list[float], list[float]]:
    n = st(tr).n_steps
    return [f(tr[(t, "x")]) for t in range(n)], [f(tr[(t, "y")]) for t in range(n)]


def full_score(xs: list[float], ys: list[float], x0: float = 0.0, a: float = A) -> float:
    total, prev = 0.0, x0
    for x, y in zip(xs, ys):
        total += step_score(prev, x, y, a)
        prev = x
    return total


CHAIN = Unfold(lg_step)
X0 = mx.array(0.0)


def args(n: int) -> tuple[Any, ...]:
    return (n, X0, A)


def nc() -> tuple[Diff, ...]:
    return (NoChange, NoChange, NoChange)


# ---------------------------------------------------------------------------- numbers
def test_assess_closed_form_and_retval() -> None:
    xs, ys = [0.3, -0.2, 1.1], [0.5, 0.0, 0.9]
    cm = choicemap({(t, k): v for t in range(3) for k, v in (("x", xs[t]), ("y", ys[t]))})
    ld, rv = CHAIN.assess(args(3), cm)
    assert f(ld) == pytest.approx(full_score(xs, ys), abs=1e-5)
    np.testing.assert_allclose(np.asarray(rv), xs, rtol=1e-6)


def test_simulate_layout_score_and_stacked_retval() -> None:
    tr = CHAIN.simulate(args(4), key=mx.random.key(0))
    assert isinstance(tr, UnfoldTrace) and st(tr).n_steps == 4
    assert sorted(map(str, tr.get_choices().addresses())) == sorted(
        str((t, k)) for t in range(4) for k in ("x", "y")
    )
    xs, ys = values(tr)
    assert f(tr.score) == pytest.approx(full_score(xs, ys), abs=1e-4)
    assert tr.retval.shape == (4,)
    np.testing.assert_allclose(np.asarray(tr.retval), xs, rtol=1e-6)


def test_generate_partial_weight() -> None:
    cons = choicemap({(0, "x"): 0.4, (2, "y"): -0.7})
    tr, w = CHAIN.generate(args(3), cons, key=mx.random.key(1))
    xs, ys = values(tr)
    assert xs[0] == pytest.approx(0.4) and ys[2] == pytest.approx(-0.7)
    assert f(w) == pytest.approx(lp(0.4, A * 0.0, Q) + lp(-0.7, xs[2], R), abs=1e-5)
    assert f(tr.score) == pytest.approx(full_score(xs, ys), abs=1e-4)


def test_generate_empty_and_n_steps_zero() -> None:
    _, w = CHAIN.generate(args(3), None, key=mx.random.key(2))
    assert f(w) == 0.0
    tr = CHAIN.simulate(args(0), key=mx.random.key(2))
    assert st(tr).n_steps == 0 and f(tr.score) == 0.0 and tr.retval.shape == (0,)
    assert tr.get_choices().is_empty


def test_update_one_step_changed() -> None:
    tr = CHAIN.simulate(args(3), key=mx.random.key(3))
    xs, ys = values(tr)
    new, w, rd, discard = CHAIN.update(
        tr, choicemap({(1, "x"): 2.0}), args(3), nc(), key=mx.random.key(4)
    )
    xs2 = [xs[0], 2.0, xs[2]]
    expected = full_score(xs2, ys) - full_score(xs, ys)
    assert f(w) == pytest.approx(expected, abs=1e-4)
    assert f(new.score) == pytest.approx(full_score(xs2, ys), abs=1e-4)
    assert discard.addresses() == [(1, "x")] and f(discard[(1, "x")]) == pytest.approx(xs[1])
    assert isinstance(rd, VectorDiff) and 1 in rd.updated
    assert st(new).steps[0] is st(tr).steps[0]  # untouched prefix
    # update back with the discard: the inverse move
    back, w2, _, d2 = CHAIN.update(new, discard, args(3), nc(), key=mx.random.key(5))
    assert f(w2) == pytest.approx(-f(w), abs=1e-5)
    assert f(d2[(1, "x")]) == pytest.approx(2.0)


def test_update_extend_and_shrink_weights_and_discards() -> None:
    tr = CHAIN.simulate(args(3), key=mx.random.key(6))
    xs, ys = values(tr)
    up, w, rd, discard = CHAIN.update(
        tr, choicemap({(4, "y"): 1.5}), args(5), nc(), key=mx.random.key(7)
    )
    xs5, ys5 = values(up)
    assert xs5[:3] == xs and ys5[:3] == ys and ys5[4] == pytest.approx(1.5)
    assert f(w) == pytest.approx(lp(1.5, xs5[4], R), abs=1e-5)  # new unconstrained: 0
    assert discard.is_empty
    assert rd.new_length == 5 and rd.prev_length == 3  # type: ignore[attr-defined]
    assert f(up.score) == pytest.approx(full_score(xs5, ys5), abs=1e-4)
    assert up.retval.shape == (5,)

    down, w2, _, d2 = CHAIN.update(up, None, args(2), nc(), key=mx.random.key(8))
    removed = full_score(xs5, ys5) - full_score(xs5[:2], ys5[:2])
    assert f(w2) == pytest.approx(-removed, abs=1e-4)
    assert sorted(map(str, d2.addresses())) == sorted(
        str((t, k)) for t in (2, 3, 4) for k in ("x", "y")
    )
    assert f(d2[(3, "x")]) == pytest.approx(xs5[3])
    assert f(down.score) == pytest.approx(full_score(xs5[:2], ys5[:2]), abs=1e-4)
    assert st(down).n_steps == 2 and down.retval.shape == (2,)


def test_update_changed_init_state_and_param() -> None:
    tr = CHAIN.simulate(args(3), key=mx.random.key(9))
    xs, ys = values(tr)
    new, w, _, discard = CHAIN.update(
        tr, None, (3, mx.array(1.0), A), (NoChange, UnknownChange, NoChange), key=mx.random.key(1)
    )
    assert f(w) == pytest.approx(lp(xs[0], A * 1.0, Q) - lp(xs[0], 0.0, Q), abs=1e-5)
    assert discard.is_empty and values(new) == (xs, ys)
    new, w, _, _ = CHAIN.update(tr, None, (3, X0, 0.5), (NoChange, NoChange, UnknownChange))
    expected = full_score(xs, ys, a=0.5) - full_score(xs, ys)
    assert f(w) == pytest.approx(expected, abs=1e-4)


def test_regenerate_weight() -> None:
    tr = CHAIN.simulate(args(3), key=mx.random.key(10))
    xs, ys = values(tr)
    new, w, _ = CHAIN.regenerate(tr, select((1, "x")), key=mx.random.key(11))
    xs2, ys2 = values(new)
    assert ys2 == ys and xs2[0] == xs[0] and xs2[2] == xs[2] and xs2[1] != xs[1]
    expected = (lp(ys[1], xs2[1], R) - lp(ys[1], xs[1], R)) + (
        lp(xs[2], A * xs2[1], Q) - lp(xs[2], A * xs[1], Q)
    )
    assert f(w) == pytest.approx(expected, abs=1e-4)
    assert f(new.score) == pytest.approx(full_score(xs2, ys2), abs=1e-4)
    # growing while regenerating: the new steps add 0
    grown, w3, _ = CHAIN.regenerate(tr, Selection.none(), args(5), nc(), key=mx.random.key(2))
    assert st(grown).n_steps == 5 and f(w3) == 0.0


def test_project() -> None:
    tr = CHAIN.simulate(args(3), key=mx.random.key(12))
    xs, ys = values(tr)
    got = CHAIN.project(tr, select((1, "x"), 2))
    expected = lp(xs[1], A * xs[0], Q) + step_score(xs[1], xs[2], ys[2])
    assert f(got) == pytest.approx(expected, abs=1e-5)
    assert f(CHAIN.project(tr, ~select(0))) == pytest.approx(
        full_score(xs, ys) - step_score(0.0, xs[0], ys[0]), abs=1e-4
    )


def test_propose_and_edit() -> None:
    choices, w, rv = CHAIN.propose(args(3), key=mx.random.key(13))
    ld, _ = CHAIN.assess(args(3), choices)
    assert f(ld) == pytest.approx(f(w), abs=1e-5) and rv.shape == (3,)
    from genmlx.core.edit import ConstraintEdit

    tr = CHAIN.simulate(args(3), key=mx.random.key(14))
    new, w, _, back = CHAIN.edit(tr, ConstraintEdit(choicemap({(0, "y"): 0.0})))
    _, w2, _, _ = CHAIN.edit(new, back)
    assert f(w + w2) == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------------------- incremental
class ObsInertKernel(DynamicGenerativeFunction):
    """lg_step, but its update knows that the observation ``y`` never feeds the state:
    an update that only constrains ``y`` (with unchanged args) returns ``NoChange``."""

    def _update(self, trace: Any, constraints: ChoiceMap, *rest: Any) -> UpdateResult:
        res = super()._update(trace, constraints, *rest)
        argdiffs = rest[1]
        only_y = all(str(p[0]) == "y" for p, _ in constraints.leaves())
        if only_y and all(d.is_no_change() for d in argdiffs):
            return res._replace(retdiff=NoChange)
        return res


INERT = ObsInertKernel(lg_step.fn)


def counted(fn: Any) -> int:
    COUNT["n"] = 0
    fn()
    return COUNT["n"]


def test_extend_by_one_runs_one_step_and_adds_one_score() -> None:
    tr = CHAIN.simulate(args(50), key=mx.random.key(20))
    res: dict[str, Any] = {}

    def go() -> None:
        res["u"] = CHAIN.update(
            tr, choicemap({(50, "y"): 0.1}), args(51), nc(), key=mx.random.key(21)
        )

    assert counted(go) == 1
    new, w, _, discard = res["u"]
    assert st(new).n_steps == 51 and discard.is_empty
    assert all(st(new).steps[t] is st(tr).steps[t] for t in range(50))
    # the running total: exactly old score + the new step's score
    assert f(new.score) == f(tr.score + st(new).steps[50].score)
    assert f(w) == pytest.approx(lp(0.1, f(new[(50, "x")]), R), abs=1e-5)


def test_constrain_step_40_of_50_reruns_ten_steps() -> None:
    tr = CHAIN.simulate(args(50), key=mx.random.key(22))
    n = counted(lambda: CHAIN.update(tr, choicemap({(40, "x"): 0.5}), key=mx.random.key(23)))
    assert n == 10
    n = counted(lambda: CHAIN.regenerate(tr, select((40, "x")), key=mx.random.key(23)))
    assert n == 10


def test_noop_update_and_unchanged_state_run_nothing_extra() -> None:
    tr = CHAIN.simulate(args(50), key=mx.random.key(24))
    assert counted(lambda: CHAIN.update(tr, None, key=mx.random.key(1))) == 0
    assert counted(lambda: CHAIN.regenerate(tr, Selection.none(), key=mx.random.key(1))) == 0
    # a kernel whose retdiff is NoChange when only the observation changes: one step
    chain = Unfold(INERT)
    tr = chain.simulate(args(50), key=mx.random.key(25))
    res: dict[str, Any] = {}

    def go() -> None:
        res["u"] = chain.update(tr, choicemap({(10, "y"): 0.0}), key=mx.random.key(26))

    assert counted(go) == 1
    new, w, rd, _ = res["u"]
    assert rd.is_no_change() and all(
        st(new).steps[t] is st(tr).steps[t] for t in range(50) if t != 10
    )
    x10 = f(tr[(10, "x")])
    assert f(w) == pytest.approx(lp(0.0, x10, R) - lp(f(tr[(10, "y")]), x10, R), abs=1e-5)
    # two observations far apart: exactly those two steps
    cons = choicemap({(5, "y"): 0.0, (45, "y"): 0.0})
    assert counted(lambda: chain.update(tr, cons, key=mx.random.key(26))) == 2


def test_changed_init_state_or_param_reruns_from_step_zero() -> None:
    tr = CHAIN.simulate(args(20), key=mx.random.key(27))
    diffs = (NoChange, UnknownChange, NoChange)
    assert counted(lambda: CHAIN.update(tr, None, (20, mx.array(1.0), A), diffs)) == 20
    assert counted(lambda: CHAIN.update(tr, None, args(20), nc())) == 0
    diffs = (NoChange, NoChange, UnknownChange)
    assert counted(lambda: CHAIN.update(tr, None, (20, X0, 0.3), diffs)) == 20
    # shrinking runs nothing
    assert counted(lambda: CHAIN.update(tr, None, args(12), nc())) == 0


def test_inert_init_change_stops_after_step_zero() -> None:
    chain = Unfold(INERT)
    tr = chain.simulate(args(30), key=mx.random.key(28))
    # changing only y of step 0 and extending: step 0 plus the new step
    cons = choicemap({(0, "y"): 0.2, (30, "y"): 0.0})
    assert counted(lambda: chain.update(tr, cons, args(31), nc(), key=mx.random.key(1))) == 2


# ---------------------------------------------------------------------------- laws
@gen
def small_kernel(t: int, x: Any, s: float) -> Any:
    x = normal(0.5 * x + 0.1 * t, s) @ "x"
    normal(x, 1.0) @ ("obs", "y")
    return x


def test_gfi_laws() -> None:
    check_gfi_laws(Unfold(small_kernel), (3, mx.array(0.2), 0.7), max_examples=3)


# ---------------------------------------------------------------------------- batching
P = 4


def particle(cm: ChoiceMap, i: int) -> ChoiceMap:
    return cm.map(lambda v: v[i]).with_batch_shape(())


def assert_same(a: ChoiceMap, b: ChoiceMap) -> None:
    pa = sorted(map(str, a.addresses()))
    assert pa == sorted(map(str, b.addresses()))
    for path, v in a.leaves():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(b[path]))


def test_batched_simulate_generate_update_regenerate_match_unbatched() -> None:
    k1, k2, k3 = mx.random.key(30), mx.random.key(31), mx.random.key(32)
    vt = CHAIN.vsimulate(args(5), P, key=k1)
    assert vt.batch_shape == (P,) and vt.retval.shape == (P, 5) and vt.score.shape == (P,)
    keys1, keys2, keys3 = (mx.random.split(k, P) for k in (k1, k2, k3))
    cons = choicemap({(2, "y"): 0.3, (5, "y"): -0.1})
    COUNT["n"] = 0
    vu, vw, _, vd = CHAIN.update(vt, cons, args(6), nc(), key=k2)
    assert COUNT["n"] == 4  # steps 2-4 re-run, step 5 new: once each for all particles
    vr, vrw, _ = CHAIN.regenerate(vt, select((1, "x")), key=k3)
    cons_b = choicemap({(0, "x"): mx.arange(P).astype(mx.float32)}, batch_shape=(P,))
    vg, vgw = CHAIN.vgenerate(args(3), cons_b, P, key=k2)
    for i in range(P):
        t = CHAIN.simulate(args(5), key=keys1[i])
        assert_same(particle(vt.get_choices(), i), t.get_choices())
        np.testing.assert_array_equal(np.asarray(vt.score[i]), np.asarray(t.score))
        np.testing.assert_array_equal(np.asarray(vt.retval[i]), np.asarray(t.retval))
        u, w, _, d = CHAIN.update(t, cons, args(6), nc(), key=keys2[i])
        assert_same(particle(vu.get_choices(), i), u.get_choices())
        np.testing.assert_allclose(np.asarray(vw[i]), np.asarray(w), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(vu.score[i]), np.asarray(u.score), rtol=1e-6)
        assert_same(particle(vd, i), d)
        r, rw, _ = CHAIN.regenerate(t, select((1, "x")), key=keys3[i])
        assert_same(particle(vr.get_choices(), i), r.get_choices())
        np.testing.assert_allclose(np.asarray(vrw[i]), np.asarray(rw), rtol=1e-6, atol=1e-6)
        g, gw = CHAIN.generate(args(3), particle(cons_b, i), key=keys2[i])
        assert_same(particle(vg.get_choices(), i), g.get_choices())
        np.testing.assert_allclose(np.asarray(vgw[i]), np.asarray(gw), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(CHAIN.project(vt, select(1))).shape, (P,))


@gen
def emission(x: Any) -> Any:
    return normal(x, R) @ "y"


@gen
def nested_step(t: int, x: Any, a: float) -> Any:
    x = normal(a * x, Q) @ "x"
    emission(x) @ "obs"
    return x


NESTED = Unfold(nested_step)


@gen
def ssm(n: int) -> Any:
    x0 = normal(0.0, 1.0) @ "x0"
    states = NESTED(n, x0, A) @ "chain"
    return states[-1]


def test_three_levels_batched() -> None:
    k1, k2 = mx.random.key(40), mx.random.key(41)
    obs = choicemap({("chain", t, "obs", "y"): 0.1 * t for t in range(4)})
    vt, vw = ssm.vgenerate((4,), obs, P, key=k1)
    assert vt.batch_shape == (P,) and vw.shape == (P,)
    keys1, keys2 = mx.random.split(k1, P), mx.random.split(k2, P)
    more = choicemap({("chain", 4, "obs", "y"): 0.4})
    vu, vuw, _, _ = ssm.update(vt, more, (5,), (UnknownChange,), key=k2)
    sub = vu.get_subtrace("chain")  # type: ignore[attr-defined]
    assert isinstance(sub, UnfoldTrace) and sub.batch_shape == (P,) and st(sub).n_steps == 5
    assert sub.retval.shape == (P, 5)
    for i in range(P):
        t, w = ssm.generate((4,), obs, key=keys1[i])
        assert_same(particle(vt.get_choices(), i), t.get_choices())
        np.testing.assert_allclose(np.asarray(vw[i]), np.asarray(w), rtol=1e-6, atol=1e-6)
        u, uw, _, _ = ssm.update(t, more, (5,), (UnknownChange,), key=keys2[i])
        assert_same(particle(vu.get_choices(), i), u.get_choices())
        np.testing.assert_allclose(np.asarray(vuw[i]), np.asarray(uw), rtol=1e-6, atol=1e-6)
        x4 = f(u[("chain", 4, "x")])
        assert f(uw) == pytest.approx(lp(0.4, x4, R), abs=1e-5)
        np.testing.assert_allclose(np.asarray(vu.retval[i]), x4, rtol=1e-6)


# ---------------------------------------------------------------------------- errors
def test_constraint_errors_name_the_address() -> None:
    with pytest.raises(ConstraintError, match=r"\(3, 'x'\).*3 steps"):
        CHAIN.generate(args(3), choicemap({(3, "x"): 0.0}))
    with pytest.raises(ConstraintError, match=r"'x'.*not a step"):
        CHAIN.generate(args(3), choicemap({"x": 0.0}))
    tr = CHAIN.simulate(args(3), key=mx.random.key(0))
    with pytest.raises(ConstraintError, match=r"\(7, 'y'\)"):
        CHAIN.update(tr, choicemap({(7, "y"): 0.0}))
    with pytest.raises(ConstraintError, match=r"\(5, 'x'\)"):
        CHAIN.assess(args(3), tr.get_choices().set((5, "x"), 0.0))
    # an address the kernel does not have: the kernel's error, with the step named
    with pytest.raises(ConstraintError, match=r"step 1"):
        CHAIN.generate(args(3), choicemap({(1, "z"): 0.0}))
    with pytest.raises(AddressError, match=r"\(9, 'x'\)"):
        CHAIN.regenerate(tr, select((9, "x")))
    with pytest.raises(AddressError, match=r"\(9, 'x'\)"):
        CHAIN.project(tr, select((9, "x")))


def test_argument_errors() -> None:
    with pytest.raises(TypeError, match="n_steps must be a Python int"):
        CHAIN.simulate((mx.array(3), X0, A))
    with pytest.raises(TypeError, match="n_steps must be a Python int"):
        CHAIN.simulate((-1, X0, A))
    with pytest.raises(TypeError, match="init_state"):
        CHAIN.simulate((3,))
    with pytest.raises(TypeError, match="kernel must be a generative function"):
        Unfold(lambda t, x: x)  # type: ignore[arg-type]


FAIL = {"at": -1}


@gen
def fragile(t: int, x: Any) -> Any:
    if t == FAIL["at"]:
        raise RuntimeError("kernel failed")
    return normal(x, 1.0) @ "x"


def test_exception_safety() -> None:
    chain = Unfold(fragile)
    tr = chain.simulate((5, X0), key=mx.random.key(1))
    before = [f(tr[(t, "x")]) for t in range(5)]
    FAIL["at"] = 6
    try:
        with pytest.raises(RuntimeError, match="kernel failed"):
            chain.update(tr, None, (7, X0), (NoChange, NoChange), key=mx.random.key(2))
        with pytest.raises(RuntimeError, match="kernel failed"):
            chain.vsimulate((8, X0), 3, key=mx.random.key(2))
    finally:
        FAIL["at"] = -1
    assert runtime.active_run() is None
    assert [f(tr[(t, "x")]) for t in range(5)] == before and st(tr).n_steps == 5
    new, _, _, _ = chain.update(tr, None, (7, X0), (NoChange, NoChange), key=mx.random.key(2))
    assert st(new).n_steps == 7


def test_lenient_ignores_out_of_range_constraints() -> None:
    with runtime.lenient():
        tr, w = CHAIN.generate(args(2), choicemap({(5, "x"): 0.0}), key=mx.random.key(0))
    assert st(tr).n_steps == 2 and f(w) == 0.0


@gen
def pos_vel(t: int, state: Any, dt: float) -> Any:
    pos, vel = state
    vel = normal(vel, 0.1) @ "vel"
    return (pos + dt * vel, vel)


def test_tuple_state_is_stacked_leaf_by_leaf() -> None:
    chain = Unfold(pos_vel)
    init = (mx.array(0.0), mx.array(1.0))
    tr = chain.simulate((4, init, 0.5), key=mx.random.key(50))
    pos, vel = tr.retval
    assert pos.shape == (4,) and vel.shape == (4,)
    v = [f(tr[(t, "vel")]) for t in range(4)]
    np.testing.assert_allclose(np.asarray(vel), v, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(pos), np.cumsum(np.array(v) * 0.5), rtol=1e-5)
    vt = chain.vsimulate((4, init, 0.5), 3, key=mx.random.key(51))
    assert vt.retval[0].shape == (3, 4)
    empty = chain.simulate((0, init, 0.5), key=mx.random.key(0)).retval
    assert empty[0].shape == (0,) and empty[1].shape == (0,)


def test_batched_extension_runs_one_step() -> None:
    vt = CHAIN.vsimulate(args(30), P, key=mx.random.key(52))
    n = counted(lambda: CHAIN.update(vt, None, args(31), nc(), key=mx.random.key(53)))
    assert n == 1


class TinyVector(StepVector):
    CHUNK = 3


def test_step_vector_matches_a_list() -> None:
    rng = np.random.default_rng(0)
    ref: list[Any] = list(range(7))
    vec: StepVector = TinyVector.of(ref)  # type: ignore[arg-type]
    for _ in range(300):
        op = rng.integers(3)
        if op == 0:
            x = int(rng.integers(1000))
            ref, vec = [*ref, x], vec.append(x)  # type: ignore[arg-type]
        elif op == 1 and ref:
            i, x = int(rng.integers(len(ref))), int(rng.integers(1000))
            ref[i] = x
            vec = vec.set(i, x)  # type: ignore[arg-type]
        else:
            n = int(rng.integers(len(ref) + 1))
            ref, vec = ref[:n], vec.prefix(n)
        assert list(vec) == ref and len(vec) == len(ref)
        assert [vec[i] for i in range(len(ref))] == ref
        if ref:
            assert vec[-1] == ref[-1]


def test_long_chain_across_chunks() -> None:
    tr = CHAIN.simulate(args(130), key=mx.random.key(60))
    xs, ys = values(tr)
    assert f(tr.score) == pytest.approx(full_score(xs, ys), rel=1e-4)
    up, w, _, _ = CHAIN.update(tr, choicemap({(200, "y"): 0.0}), args(201), nc())
    assert counted(lambda: CHAIN.update(up, None, args(202), nc())) == 1
    xs2, ys2 = values(up)
    assert xs2[:130] == xs and f(up.score) == pytest.approx(full_score(xs2, ys2), rel=1e-4)
    down, w, _, d = CHAIN.update(up, choicemap({(127, "x"): 0.0}), args(128), nc())
    xs3, ys3 = values(down)
    assert xs3 == [*xs[:127], 0.0] and ys3 == ys[:128]
    assert f(down.score) == pytest.approx(full_score(xs3, ys3), rel=1e-4)
    assert len(d.addresses()) == 1 + 2 * (201 - 128)


def test_batched_update_with_masked_per_particle_constraints() -> None:
    k1, k2 = mx.random.key(70), mx.random.key(71)
    vt = CHAIN.vsimulate(args(4), 3, key=k1)
    ys = choicemap({(2, "y"): mx.array([1.0, 2.0, 3.0])}, batch_shape=(3,))
    cons = ys.mask(mx.array([True, False, True]))
    vu, vw, _, vd = CHAIN.update(vt, cons, key=k2)
    keys1, keys2 = mx.random.split(k1, 3), mx.random.split(k2, 3)
    for i in range(3):
        t = CHAIN.simulate(args(4), key=keys1[i])
        u, w, _, d = CHAIN.update(t, cons.particle(i), key=keys2[i])
        np.testing.assert_allclose(np.asarray(vw[i]), np.asarray(w), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(vu.score[i]), np.asarray(u.score), rtol=1e-6)
        assert vd.particle(i).addresses() == d.addresses()
    assert f(vw[1]) == 0.0
