"""Batching: particle i of a batched operation equals the unbatched operation with key i."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import (
    ChoiceMap,
    ConstraintEdit,
    NoChange,
    Selection,
    SelectionEdit,
    choicemap,
    gen,
    select,
    splice,
)
from genmlx.core.testing.models import (
    beta_bernoulli,
    linear_regression,
    normal,
    two_normals,
)

K = mx.random.key
N = 5
ATOL = 1e-6


def ln(x: float, mu: float, sigma: float) -> float:
    z = (x - mu) / sigma
    return -0.5 * z * z - math.log(sigma) - 0.5 * math.log(2.0 * math.pi)


@gen
def chain(n):
    mu = normal(0.0, 1.0) @ "mu"
    for i in range(n):
        normal(mu, 2.0) @ ("y", i)
    return mu


@gen
def inner_gf(m):
    return normal(m, 1.0) @ "x"


@gen
def middle_gf(m):
    a = normal(m, 2.0) @ "a"
    return inner_gf(a) @ "sub"


@gen
def outer_gf():
    m = normal(0.0, 3.0) @ "m"
    return middle_gf(m) @ "mid"


@gen
def helper(m):
    return normal(m, 1.0) @ "h"


@gen
def spliced():
    m = normal(0.0, 1.0) @ "m"
    return splice(helper, m)


def particle(cm: ChoiceMap, i: int) -> ChoiceMap:
    """Particle i of a batched choice map, as an unbatched choice map."""
    out = ChoiceMap.empty()
    for a, v in cm:
        out = out.set(a, v[i])
    return out


def assert_same_choices(batched: ChoiceMap, i: int, single: ChoiceMap) -> None:
    b = [(a, v[i]) for a, v in batched]
    s = list(single)
    assert [a for a, _ in b] == [a for a, _ in s]
    for (_, x), (_, y) in zip(b, s):
        assert x.dtype == y.dtype
        np.testing.assert_allclose(np.array(x), np.array(y), rtol=0, atol=ATOL)


def close(a: mx.array, b: mx.array, tol: float = 1e-6) -> None:
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=tol, atol=tol)


def _rebuild(gf, args, batched_tr, i):
    """Particle i of a batched trace rebuilt as an unbatched trace (generate, full constraints)."""
    tr, w = gf.generate(args, particle(batched_tr.get_choices(), i), key=K(999))
    close(w, tr.score)
    close(tr.score, batched_tr.score[i], 1e-5)
    return tr


# --------------------------------------------------------------------------- vsimulate
CASES = [
    (two_normals, ()),
    (chain, (3,)),
    (outer_gf, ()),
    (spliced, ()),
    (beta_bernoulli, ()),
    (linear_regression, (mx.array([0.0, 1.0, 2.0]),)),
]


@pytest.mark.parametrize("gf, args", CASES, ids=lambda x: getattr(x, "name", ""))
def test_vsimulate_particle_i_equals_simulate_with_key_i(gf, args):
    key = K(42)
    tr = gf.vsimulate(args, N, key=key)
    keys = mx.random.split(key, N)
    assert tr.batch_shape == (N,)
    assert tr.score.shape == (N,)
    assert tr.get_choices().batch_shape == (N,)
    assert tr.args is args
    for _, v in tr.get_choices():
        assert v.shape[0] == N
    for i in range(N):
        single = gf.simulate(args, key=keys[i])
        assert_same_choices(tr.get_choices(), i, single.get_choices())
        close(tr.score[i], single.score)
        close(tr.retval[i], single.retval)


def test_vsimulate_particles_differ_and_scores_are_closed_form():
    tr = chain.vsimulate((2,), N, key=K(1))
    mus = tr["mu"].tolist()
    assert len(set(mus)) == N
    for i in range(N):
        y0, y1 = tr[("y", 0)][i].item(), tr[("y", 1)][i].item()
        expected = ln(mus[i], 0, 1) + ln(y0, mus[i], 2) + ln(y1, mus[i], 2)
        assert tr.score[i].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_batched_subcall_traces():
    tr = outer_gf.vsimulate((), N, key=K(2))
    sub = tr.get_subtrace("mid")
    assert sub.batch_shape == (N,)
    assert sub.score.shape == (N,)
    assert tr[("mid", "sub", "x")].shape == (N,)
    assert tr["mid"].shape == (N,)  # the call's return value, per particle
    close(tr["mid"], tr[("mid", "sub", "x")], 0)


def test_vector_choices_under_batching():
    @gen
    def vec():
        return normal(mx.zeros(3), 1.0) @ "v"

    tr = vec.vsimulate((), N, key=K(3))
    assert tr["v"].shape == (N, 3)
    keys = mx.random.split(K(3), N)
    for i in range(N):
        single = vec.simulate((), key=keys[i])
        close(tr["v"][i], single["v"])
        close(tr.score[i], single.score)


# --------------------------------------------------------------------------- vgenerate
def test_vgenerate_shared_constraints():
    key = K(4)
    cons = choicemap({"x": 1.5})
    tr, w = two_normals.vgenerate((), cons, N, key=key)
    assert w.shape == (N,) and tr.batch_shape == (N,)
    assert tr["x"].tolist() == [1.5] * N
    keys = mx.random.split(key, N)
    for i in range(N):
        t1, w1 = two_normals.generate((), cons, key=keys[i])
        close(w[i], w1)
        assert_same_choices(tr.get_choices(), i, t1.get_choices())
        mu = t1["mu"].item()
        assert w[i].item() == pytest.approx(ln(1.5, mu, 1.0), rel=1e-5, abs=1e-5)


def test_vgenerate_batched_constraints():
    key = K(5)
    xs = mx.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    cons = choicemap({("y", 1): xs}, batch_shape=(N,))
    tr, w = chain.vgenerate((3,), cons, N, key=key)
    close(tr[("y", 1)], xs, 0)
    keys = mx.random.split(key, N)
    for i in range(N):
        t1, w1 = chain.generate((3,), choicemap({("y", 1): xs[i]}), key=keys[i])
        close(w[i], w1)
        assert_same_choices(tr.get_choices(), i, t1.get_choices())
    # generate with a batched choice map is vgenerate
    tr2, w2 = chain.generate((3,), cons, key=key)
    assert tr2.batch_shape == (N,)
    close(w2, w, 0)


def test_vgenerate_empty_constraints_weights_zero():
    tr, w = chain.vgenerate((2,), None, N, key=K(6))
    assert w.tolist() == [0.0] * N
    sim = chain.vsimulate((2,), N, key=K(6))
    close(tr.score, sim.score, 0)


def test_vgenerate_nested_subcall_constraints():
    key = K(7)
    cons = choicemap({("mid", "sub", "x"): 0.5})
    tr, w = outer_gf.vgenerate((), cons, N, key=key)
    keys = mx.random.split(key, N)
    for i in range(N):
        t1, w1 = outer_gf.generate((), cons, key=keys[i])
        close(w[i], w1)
        a = tr[("mid", "a")][i].item()
        assert w[i].item() == pytest.approx(ln(0.5, a, 1.0), rel=1e-5, abs=1e-5)


def test_vgenerate_discrete_model():
    key = K(8)
    tr, w = beta_bernoulli.vgenerate((), {"x": True}, N, key=key)
    ps = tr["p"].tolist()
    for i in range(N):
        assert w[i].item() == pytest.approx(math.log(ps[i]), rel=1e-5, abs=1e-5)
    assert tr["x"].dtype == mx.bool_


# --------------------------------------------------------------------------- update
def test_batched_update_shared_constraints_equals_per_particle():
    tr = chain.vsimulate((3,), N, key=K(10))
    ukey = K(11)
    new, w, rd, disc = chain.update(tr, choicemap({"mu": 0.25}), key=ukey)
    assert w.shape == (N,) and new.batch_shape == (N,) and disc.batch_shape == (N,)
    close(disc["mu"], tr["mu"], 0)
    keys = mx.random.split(ukey, N)
    for i in range(N):
        t1 = _rebuild(chain, (3,), tr, i)
        n1, w1, _, d1 = chain.update(t1, choicemap({"mu": 0.25}), key=keys[i])
        close(w[i], w1)
        assert_same_choices(new.get_choices(), i, n1.get_choices())
        assert_same_choices(disc, i, d1)
        close(new.score[i], n1.score)


def test_batched_update_with_args_change_and_batched_constraints():
    tr = chain.vsimulate((3,), N, key=K(12))
    ukey = K(13)
    vals = mx.array([0.1, 0.2, 0.3, 0.4, 0.5])
    cons = choicemap({("y", 3): vals}, batch_shape=(N,))
    new, w, _, disc = chain.update(tr, cons, args=(5,), key=ukey)
    assert new.args == (5,)
    close(new[("y", 3)], vals, 0)
    assert new[("y", 4)].shape == (N,)
    keys = mx.random.split(ukey, N)
    for i in range(N):
        t1 = _rebuild(chain, (3,), tr, i)
        n1, w1, _, d1 = chain.update(t1, choicemap({("y", 3): vals[i]}), args=(5,), key=keys[i])
        close(w[i], w1)
        assert_same_choices(new.get_choices(), i, n1.get_choices())
        mu = t1["mu"].item()
        assert w[i].item() == pytest.approx(ln(vals[i].item(), mu, 2.0), rel=1e-5, abs=1e-5)
    # shrinking: removed choices are discarded per particle
    new, w, _, disc = chain.update(tr, None, args=(2,), key=ukey)
    close(disc[("y", 2)], tr[("y", 2)], 0)
    for i in range(N):
        mu, y2 = tr["mu"][i].item(), tr[("y", 2)][i].item()
        assert w[i].item() == pytest.approx(-ln(y2, mu, 2.0), rel=1e-5, abs=1e-5)


def test_batched_update_no_change():
    tr = chain.vsimulate((3,), N, key=K(14))
    new, w, rd, disc = chain.update(tr, None, key=K(15))
    assert w.tolist() == [0.0] * N
    assert rd is NoChange
    assert disc.is_empty
    close(new.score, tr.score, 0)


def test_batched_update_restores_with_discard():
    tr = chain.vsimulate((3,), N, key=K(16))
    new, w, _, disc = chain.update(tr, choicemap({"mu": -1.0}), args=(2,), key=K(17))
    back, wb, _, _ = chain.update(new, disc, args=(3,), key=K(18))
    close(wb, -w, 1e-5)
    for (a, x), (b, y) in zip(back.get_choices(), tr.get_choices()):
        assert a == b
        close(x, y, 0)


# --------------------------------------------------------------------------- regenerate
@pytest.mark.parametrize(
    "gf, args, sel",
    [
        (two_normals, (), select("mu")),
        (chain, (3,), select(("y", 1), "mu")),
        (outer_gf, (), select(("mid", "a"))),
        (spliced, (), select("m")),
    ],
    ids=["two_normals", "chain", "nested", "spliced"],
)
def test_batched_regenerate_equals_per_particle(gf, args, sel):
    tr = gf.vsimulate(args, N, key=K(20))
    rkey = K(21)
    new, w, _ = gf.regenerate(tr, sel, key=rkey)
    assert w.shape == (N,) and new.batch_shape == (N,)
    keys = mx.random.split(rkey, N)
    for i in range(N):
        t1 = _rebuild(gf, args, tr, i)
        n1, w1, _ = gf.regenerate(t1, sel, key=keys[i])
        close(w[i], w1)
        assert_same_choices(new.get_choices(), i, n1.get_choices())
        close(new.score[i], n1.score)


def test_batched_regenerate_formula_two_normals():
    tr = two_normals.vsimulate((), N, key=K(22))
    new, w, _ = two_normals.regenerate(tr, select("mu"), key=K(23))
    close(new["x"], tr["x"], 0)
    for i in range(N):
        x, mu, mu2 = tr["x"][i].item(), tr["mu"][i].item(), new["mu"][i].item()
        assert mu2 != mu
        assert w[i].item() == pytest.approx(ln(x, mu2, 1) - ln(x, mu, 1), rel=1e-5, abs=1e-5)


def test_batched_regenerate_none_and_all():
    tr = chain.vsimulate((2,), N, key=K(24))
    new, w, rd = chain.regenerate(tr, Selection.none(), key=K(25))
    assert w.tolist() == [0.0] * N and rd is NoChange
    close(new["mu"], tr["mu"], 0)
    new, w, _ = chain.regenerate(tr, Selection.all(), key=K(25))
    assert w.tolist() == [0.0] * N
    assert not np.any(np.array(new["mu"]) == np.array(tr["mu"]))


# --------------------------------------------------------------------------- project
def test_batched_project_equals_per_particle():
    tr = outer_gf.vsimulate((), N, key=K(30))
    for sel in (select("m"), select(("mid", "sub")), Selection.all(), Selection.none()):
        p = outer_gf.project(tr, sel)
        assert p.shape == (N,)
        for i in range(N):
            t1 = _rebuild(outer_gf, (), tr, i)
            close(p[i], outer_gf.project(t1, sel))
    close(outer_gf.project(tr, Selection.all()), tr.score, 1e-6)
    assert outer_gf.project(tr, Selection.none()).tolist() == [0.0] * N


# --------------------------------------------------------------------------- edit
def test_batched_edit_equals_per_particle():
    tr = chain.vsimulate((2,), N, key=K(40))
    ekey = K(41)
    keys = mx.random.split(ekey, N)
    req = ConstraintEdit(choicemap({("y", 0): 0.0}))
    new, w, _, back = chain.edit(tr, req, key=ekey)
    assert isinstance(back, ConstraintEdit)
    close(back.constraints[("y", 0)], tr[("y", 0)], 0)
    for i in range(N):
        t1 = _rebuild(chain, (2,), tr, i)
        n1, w1, _, _ = chain.edit(t1, req, key=keys[i])
        close(w[i], w1)
        assert_same_choices(new.get_choices(), i, n1.get_choices())
    # applying the backward request restores every particle
    restored, wb, _, _ = chain.edit(new, back, key=K(42))
    close(wb, -w, 1e-5)
    close(restored[("y", 0)], tr[("y", 0)], 0)

    sreq = SelectionEdit(select("mu"), args=(3,))
    new, w, _, sback = chain.edit(tr, sreq, key=ekey)
    assert new.args == (3,) and sback.args == (2,)
    for i in range(N):
        t1 = _rebuild(chain, (2,), tr, i)
        n1, w1, _, _ = chain.edit(t1, sreq, key=keys[i])
        close(w[i], w1)
        assert_same_choices(new.get_choices(), i, n1.get_choices())


# --------------------------------------------------------------------------- assess
def test_assess_on_batched_choicemap():
    vals = {"mu": mx.array([0.0, 1.0, -1.0]), "x": mx.array([0.5, 0.5, 2.0])}
    cm = choicemap(vals, batch_shape=(3,))
    ld, rv = two_normals.assess((), cm)
    assert ld.shape == (3,)
    close(rv, vals["x"], 0)
    for i in range(3):
        mu, x = vals["mu"][i].item(), vals["x"][i].item()
        expected = ln(mu, 0, 10) + ln(x, mu, 1)
        assert ld[i].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)
        single, _ = two_normals.assess((), {"mu": mu, "x": x})
        close(ld[i], single)


def test_assess_of_a_batched_trace_choices():
    tr = outer_gf.vsimulate((), N, key=K(50))
    ld, _ = outer_gf.assess((), tr.get_choices())
    close(ld, tr.score, 1e-6)


# --------------------------------------------------------------------------- args
def test_array_args_are_shared_by_all_particles():
    xs = mx.array([0.0, 1.0, 2.0, 3.0])
    cons = {f"y{i}": float(2 * i + 1) for i in range(4)}
    tr, w = linear_regression.vgenerate((xs,), cons, N, key=K(60))
    assert tr.args[0] is xs
    for i in range(N):
        s, b = tr["slope"][i].item(), tr["intercept"][i].item()
        expected = sum(ln(2 * j + 1, s * j + b, 1) for j in range(4))
        assert w[i].item() == pytest.approx(expected, rel=1e-5, abs=1e-4)


def test_same_key_same_batch():
    a = chain.vsimulate((2,), N, key=K(70))
    b = chain.vsimulate((2,), N, key=K(70))
    close(a.score, b.score, 0)
    c = chain.vsimulate((2,), N, key=K(71))
    assert not np.allclose(np.array(a.score), np.array(c.score))


def test_batched_constraint_edit_with_per_particle_constraints_round_trips():
    tr = two_normals.vsimulate((), 3, key=K(80))
    vals = mx.array([1.0, 2.0, 3.0])
    cons = choicemap({"x": vals}, batch_shape=(3,))
    new, w, _, back = two_normals.edit(tr, ConstraintEdit(cons), key=K(81))
    close(new["x"], vals, 0)
    assert back.constraints.batch_shape == (3,)
    close(back.constraints["x"], tr["x"], 0)
    for i in range(3):
        mu, x = tr["mu"][i].item(), tr["x"][i].item()
        expected = ln(vals[i].item(), mu, 1) - ln(x, mu, 1)
        assert w[i].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)
    restored, wb, _, _ = two_normals.edit(new, back, key=K(82))
    close(restored["x"], tr["x"], 0)
    close(w + wb, mx.zeros(3), 1e-5)


def test_distribution_batched_gfi():
    key = K(90)
    tr = normal.vsimulate((1.0, 2.0), N, key=key)
    assert tr.batch_shape == (N,) and tr.retval.shape == (N,)
    keys = mx.random.split(key, N)
    for i in range(N):
        single = normal.simulate((1.0, 2.0), key=keys[i])
        close(tr.retval[i], single.retval)
        close(tr.score[i], single.score)
    vals = mx.array([0.0, 1.0, 2.0, 3.0, 4.0])
    ld, _ = normal.assess((1.0, 2.0), ChoiceMap.leaf(vals, batch_shape=(N,)))
    close(ld, mx.array([ln(v, 1.0, 2.0) for v in vals.tolist()]), 1e-5)
    new, w, rd, disc = normal.update(tr, None, args=(0.0, 2.0), key=K(91))
    assert rd is NoChange and disc.batch_shape == (N,) and disc.is_empty
    exp = [ln(v, 0.0, 2.0) - ln(v, 1.0, 2.0) for v in tr.retval.tolist()]
    close(w, mx.array(exp), 1e-5)
    close(normal.project(tr, Selection.all()), tr.score, 0)
    new, w, _ = normal.regenerate(tr, Selection.all(), key=K(92))
    assert w.tolist() == [0.0] * N


def test_model_without_choices_and_structured_retval_under_batching():
    @gen
    def det(x):
        return x * 2.0

    tr = det.vsimulate((mx.array(1.5),), 3, key=K(100))
    assert tr.batch_shape == (3,)
    assert tr.score.tolist() == [0.0, 0.0, 0.0]
    assert tr.retval.tolist() == [3.0, 3.0, 3.0]
    assert len(tr.get_choices()) == 0

    @gen
    def structured():
        mu = normal(0.0, 1.0) @ "mu"
        return (mu, {"sq": mu * mu, "tag": "t"}, 3)

    tr = structured.vsimulate((), 3, key=K(101))
    mu, d, three = tr.retval
    close(mu, tr["mu"], 0)
    close(d["sq"], tr["mu"] * tr["mu"], 1e-6)
    assert d["tag"] == "t" and three == 3


def test_batched_update_of_nested_subcalls_equals_per_particle():
    tr = outer_gf.vsimulate((), N, key=K(110))
    ukey = K(111)
    cons = choicemap({("mid", "a"): 0.5, "m": -0.5})
    new, w, _, disc = outer_gf.update(tr, cons, key=ukey)
    keys = mx.random.split(ukey, N)
    for i in range(N):
        t1 = _rebuild(outer_gf, (), tr, i)
        n1, w1, _, d1 = outer_gf.update(t1, cons, key=keys[i])
        close(w[i], w1)
        assert_same_choices(new.get_choices(), i, n1.get_choices())
        assert_same_choices(disc, i, d1)
        m, a, x = (tr[addr][i].item() for addr in ("m", ("mid", "a"), ("mid", "sub", "x")))
        expected = (
            (ln(-0.5, 0, 3) - ln(m, 0, 3))
            + (ln(0.5, -0.5, 2) - ln(a, m, 2))
            + (ln(x, 0.5, 1) - ln(x, a, 1))
        )
        assert w[i].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_evaluate_accepts_traces_choice_maps_and_results() -> None:
    from genmlx.core import evaluate
    from genmlx.core.testing.models import two_normals

    tr, w = two_normals.vgenerate((), {"x": 1.0}, 16, key=mx.random.key(0))
    assert evaluate(tr, tr.get_choices(), (tr, w)) is None
    assert tr["mu"].shape == (16,) and bool(mx.all(mx.isfinite(w)).item())
