"""Dimap, Contramap and MapRetval: closed-form weights, diffs, batching, laws, errors."""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import pytest

from genmlx.combinators.dimap import Contramap, Dimap, DimapTrace, MapRetval
from genmlx.core import ChoiceMap, Selection, choicemap, gen, select
from genmlx.core.diff import Diff, NoChange, UnknownChange
from genmlx.core.dsl import DynamicGenerativeFunction
from genmlx.core.edit import ConstraintEdit
from genmlx.core.runtime import active_run
from genmlx.core.testing import check_gfi_laws
from genmlx.core.testing.models import normal, two_normals
from genmlx.core.trace import Trace

TOL = 1e-5


def logn(x: float, mu: float, sigma: float) -> float:
    z = (x - mu) / sigma
    return -0.5 * z * z - math.log(sigma) - 0.5 * math.log(2 * math.pi)


@gen
def model(a: Any, b: Any) -> Any:
    """mu ~ N(a, 1); x ~ N(mu, b)."""
    mu = normal(a, 1.0) @ "mu"
    return normal(mu, b) @ "x"


def shifted() -> Dimap:
    """Dimap(model): inner args (c, 2.0); retval x + c."""
    return Dimap(model, pre=lambda c: (c, 2.0), post=lambda args, x: x + args[0])


def dt(tr: Trace) -> DimapTrace:
    assert isinstance(tr, DimapTrace)
    return tr


def f(x: Any) -> float:
    return float(x)


# ---------------------------------------------------------------------------- weights
def test_assess_is_inner_density_and_post_retval() -> None:
    d = shifted()
    ld, rv = d.assess((1.0,), choicemap({"mu": 0.5, "x": 1.5}))
    assert abs(f(ld) - (logn(0.5, 1.0, 1.0) + logn(1.5, 0.5, 2.0))) < TOL
    assert abs(f(rv) - 2.5) < TOL


def test_simulate_has_inner_choices_without_namespace() -> None:
    d = shifted()
    tr = d.simulate((1.0,), key=mx.random.key(3))
    assert isinstance(tr, DimapTrace)
    assert sorted(map(str, tr.get_choices().addresses())) == ["mu", "x"]
    mu, x = f(tr["mu"]), f(tr["x"])
    assert abs(f(tr.score) - (logn(mu, 1.0, 1.0) + logn(x, mu, 2.0))) < TOL
    assert abs(f(tr.retval) - (x + 1.0)) < TOL
    assert dt(tr).get_inner_trace().args == (1.0, 2.0)


def test_generate_weight_counts_constrained_choices() -> None:
    d = shifted()
    tr, w = d.generate((1.0,), choicemap({"x": 0.25}), key=mx.random.key(0))
    mu = f(tr["mu"])
    assert abs(f(w) - logn(0.25, mu, 2.0)) < TOL
    assert abs(f(tr.score) - (logn(mu, 1.0, 1.0) + logn(0.25, mu, 2.0))) < TOL
    assert abs(f(tr.retval) - 1.25) < TOL


def test_update_constraint_weight_discard_and_retdiff() -> None:
    d = shifted()
    tr, _ = d.generate((1.0,), choicemap({"mu": 0.5, "x": 1.5}), key=mx.random.key(0))
    new, w, rd, discard = d.update(tr, choicemap({"x": -1.0}), key=mx.random.key(1))
    assert abs(f(w) - (logn(-1.0, 0.5, 2.0) - logn(1.5, 0.5, 2.0))) < TOL
    assert discard.addresses() == ["x"] and abs(f(discard["x"]) - 1.5) < TOL
    assert rd is UnknownChange
    assert abs(f(new.retval) - 0.0) < TOL
    assert abs(f(new.score) - (logn(0.5, 1.0, 1.0) + logn(-1.0, 0.5, 2.0))) < TOL


def test_update_new_args_goes_through_pre() -> None:
    d = shifted()
    tr, _ = d.generate((1.0,), choicemap({"mu": 0.5, "x": 1.5}), key=mx.random.key(0))
    new, w, rd, discard = d.update(tr, None, (3.0,), key=mx.random.key(1))
    assert abs(f(w) - (logn(0.5, 3.0, 1.0) - logn(0.5, 1.0, 1.0))) < TOL
    assert discard.is_empty
    assert rd is UnknownChange
    assert new.args == (3.0,) and dt(new).get_inner_trace().args == (3.0, 2.0)
    assert abs(f(new.retval) - 4.5) < TOL


def test_update_noop_is_no_change() -> None:
    d = shifted()
    tr = d.simulate((1.0,), key=mx.random.key(0))
    new, w, rd, discard = d.update(tr, None, key=mx.random.key(1))
    assert f(w) == 0.0 and rd is NoChange and discard.is_empty
    assert dt(new).get_inner_trace() is dt(tr).get_inner_trace()


class _Spy(DynamicGenerativeFunction):
    """A @gen function that records the argdiffs its update receives."""

    def __init__(self, fn: Any) -> None:
        super().__init__(fn)
        self.seen: list[tuple[Diff, ...]] = []

    def _update(self, trace: Trace, c: ChoiceMap, args: Any, argdiffs: Any, key: Any) -> Any:
        self.seen.append(tuple(argdiffs))
        return super()._update(trace, c, args, argdiffs, key)


def test_inner_argdiffs() -> None:
    spy = _Spy(model.fn)
    a = mx.array(1.0)
    d = Dimap(spy, pre=lambda a, unused: (a, 2.0), post=lambda args, x: x)
    tr = d.simulate((a, 0), key=mx.random.key(0))
    # all outer argdiffs NoChange -> inner gets NoChange for every argument
    d.update(tr, choicemap({"x": 0.0}), key=mx.random.key(1))
    assert spy.seen[-1] == (NoChange, NoChange)
    # only an argument pre ignores changed: diff_args of transformed args is NoChange
    new, w, rd, _ = d.update(tr, None, (a, 1), key=mx.random.key(1))
    assert spy.seen[-1] == (NoChange, NoChange)
    assert f(w) == 0.0 and rd is UnknownChange  # outer args changed
    assert dt(new).get_inner_trace() is dt(tr).get_inner_trace()  # inner kept untouched
    # the argument pre passes on changed: UnknownChange for it
    new, w, _, _ = d.update(tr, None, (mx.array(2.0), 0), key=mx.random.key(1))
    assert spy.seen[-1] == (UnknownChange, NoChange)
    mu = f(tr["mu"])
    assert abs(f(w) - (logn(mu, 2.0, 1.0) - logn(mu, 1.0, 1.0))) < TOL


def test_regenerate_weight_and_project() -> None:
    d = shifted()
    tr, _ = d.generate((1.0,), choicemap({"mu": 0.5, "x": 1.5}), key=mx.random.key(0))
    new, w, rd = d.regenerate(tr, select("mu"), key=mx.random.key(5))
    mu2 = f(new["mu"])
    assert abs(f(w) - (logn(1.5, mu2, 2.0) - logn(1.5, 0.5, 2.0))) < TOL
    assert abs(f(new["x"]) - 1.5) < TOL and rd is UnknownChange
    assert abs(f(d.project(tr, select("x"))) - logn(1.5, 0.5, 2.0)) < TOL
    assert abs(f(d.project(tr, select("mu"))) - logn(0.5, 1.0, 1.0)) < TOL
    new, w, rd = d.regenerate(tr, Selection.none(), key=mx.random.key(5))
    assert f(w) == 0.0 and rd is NoChange


def test_propose_and_edit() -> None:
    d = shifted()
    choices, w, rv = d.propose((1.0,), key=mx.random.key(2))
    mu, x = f(choices["mu"]), f(choices["x"])
    assert abs(f(w) - (logn(mu, 1.0, 1.0) + logn(x, mu, 2.0))) < TOL
    assert abs(f(rv) - (x + 1.0)) < TOL
    tr, _ = d.generate((1.0,), choicemap({"mu": 0.5, "x": 1.5}), key=mx.random.key(0))
    new, w, _, back = d.edit(tr, ConstraintEdit(choicemap({"mu": 0.0})), key=mx.random.key(1))
    expected = logn(0.0, 1.0, 1.0) + logn(1.5, 0.0, 2.0) - logn(0.5, 1.0, 1.0)
    assert abs(f(w) - (expected - logn(1.5, 0.5, 2.0))) < TOL
    restored, w2, _, _ = d.edit(new, back, key=mx.random.key(2))
    assert abs(f(w) + f(w2)) < TOL and abs(f(restored["mu"]) - 0.5) < TOL


def test_contramap_and_mapretval() -> None:
    c = Contramap(model, lambda: (0.0, 1.0))
    ld, rv = c.assess((), choicemap({"mu": 0.3, "x": -0.2}))
    assert abs(f(ld) - (logn(0.3, 0.0, 1.0) + logn(-0.2, 0.3, 1.0))) < TOL
    assert abs(f(rv) + 0.2) < TOL
    m = MapRetval(two_normals, lambda x: x * x)
    ld, rv = m.assess((), choicemap({"mu": 1.0, "x": 3.0}))
    assert abs(f(ld) - (logn(1.0, 0.0, 10.0) + logn(3.0, 1.0, 1.0))) < TOL
    assert abs(f(rv) - 9.0) < TOL


def test_inside_a_gen_body() -> None:
    d = shifted()

    @gen
    def outer() -> Any:
        return d(1.0) @ "sub"

    tr, w = outer.generate((), choicemap({("sub", "x"): 2.0}), key=mx.random.key(0))
    mu = f(tr[("sub", "mu")])
    assert abs(f(w) - logn(2.0, mu, 2.0)) < TOL
    assert abs(f(tr.retval) - 3.0) < TOL


# ---------------------------------------------------------------------------- laws
def test_laws_dimap() -> None:
    check_gfi_laws(shifted(), (1.0,), max_examples=3)


def test_laws_contramap() -> None:
    check_gfi_laws(Contramap(model, lambda a: (a, 0.5)), (mx.array(-1.0),), max_examples=3)


def test_laws_mapretval() -> None:
    check_gfi_laws(MapRetval(two_normals, lambda r: (r, r * 2.0)), (), max_examples=3)


def test_laws_dimap_of_distribution() -> None:
    check_gfi_laws(Dimap(normal, lambda m: (m, 1.0), lambda a, x: x - a[0]), (2.0,), max_examples=3)


# ---------------------------------------------------------------------------- batching
def test_vsimulate_matches_unbatched_particles() -> None:
    d = shifted()
    key, n = mx.random.key(7), 4
    vt = d.vsimulate((1.0,), n, key=key)
    assert vt.batch_shape == (n,) and dt(vt).get_inner_trace().batch_shape == (n,)
    keys = mx.random.split(key, n)
    for i in range(n):
        tr = d.simulate((1.0,), key=keys[i])
        assert f(vt["mu"][i]) == f(tr["mu"]) and f(vt["x"][i]) == f(tr["x"])
        assert f(vt.score[i]) == f(tr.score) and f(vt.retval[i]) == f(tr.retval)


def test_batched_update_and_regenerate() -> None:
    d = shifted()
    key, n = mx.random.key(8), 3
    vt = d.vsimulate((1.0,), n, key=key)
    new, w, _, discard = d.update(vt, choicemap({"x": 0.0}), (2.0,), key=mx.random.key(1))
    assert w.shape == (n,) and new.batch_shape == (n,)
    for i in range(n):
        mu, x = f(vt["mu"][i]), f(vt["x"][i])
        expected = logn(mu, 2.0, 1.0) + logn(0.0, mu, 2.0) - logn(mu, 1.0, 1.0) - logn(x, mu, 2.0)
        assert abs(f(w[i]) - expected) < TOL
        assert abs(f(discard["x"][i]) - x) < TOL
        assert abs(f(new.retval[i]) - 2.0) < TOL
    rkey = mx.random.key(9)
    regen, rw, _ = d.regenerate(vt, select("mu"), key=rkey)
    rkeys = mx.random.split(rkey, n)
    for i in range(n):
        tr = d.simulate((1.0,), key=mx.random.split(key, n)[i])
        one, w1, _ = d.regenerate(tr, select("mu"), key=rkeys[i])
        assert f(regen["mu"][i]) == f(one["mu"]) and abs(f(rw[i]) - f(w1)) < TOL


def test_vgenerate_with_batched_constraints() -> None:
    d = shifted()
    cm = choicemap({"x": mx.array([0.0, 1.0, 2.0])}, batch_shape=(3,))
    tr, w = d.vgenerate((1.0,), cm, 3, key=mx.random.key(0))
    for i in range(3):
        assert abs(f(w[i]) - logn(float(i), f(tr["mu"][i]), 2.0)) < TOL


# ---------------------------------------------------------------------------- errors
def test_pre_must_return_a_tuple() -> None:
    d = Dimap(model, pre=lambda a: [a, 1.0])  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match=r"Dimap\(model\) \(simulate\): pre\(\*args\) must return"):
        d.simulate((1.0,), key=mx.random.key(0))
    with pytest.raises(TypeError, match="1-tuple"):
        d.assess((1.0,), choicemap({"mu": 0.0, "x": 0.0}))


def test_inner_must_be_a_generative_function() -> None:
    with pytest.raises(TypeError, match="Dimap: inner must be a generative function"):
        Dimap(lambda x: x)  # type: ignore[arg-type]


def test_exception_safety() -> None:
    def bad_pre(a: Any) -> tuple[Any, ...]:
        raise RuntimeError("boom in pre")

    @gen
    def raising(a: Any) -> Any:
        normal(a, 1.0) @ "z"
        raise RuntimeError("boom in body")

    for d in (Dimap(model, pre=bad_pre), Dimap(raising)):
        with pytest.raises(RuntimeError, match="boom"):
            d.simulate((1.0,), key=mx.random.key(0))
        assert active_run() is None

        @gen
        def outer(d: Any = d) -> Any:
            return d(1.0) @ "sub"

        with pytest.raises(RuntimeError, match="boom"):
            outer.generate((), None, key=mx.random.key(0))
        assert active_run() is None
