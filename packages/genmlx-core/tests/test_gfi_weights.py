"""Gen.jl's weight semantics, checked against closed-form log densities.

Every expected number is computed in double precision with ``math`` from the values in
the traces; the implementation works in float32, hence rel/abs tolerances of 1e-5.
"""

from __future__ import annotations

import math

import mlx.core as mx
import pytest

from genmlx.core import (
    AddressError,
    ChoiceMap,
    NoChange,
    Selection,
    UnknownChange,
    analyze,
    choicemap,
    gen,
    select,
    splice,
)
from genmlx.core.dsl import DynamicTrace
from genmlx.core.testing.models import (
    beta_bernoulli,
    linear_regression,
    normal,
    single_gaussian,
    two_normals,
)

TOL = {"rel": 1e-5, "abs": 1e-5}


def ln(x: float, mu: float, sigma: float) -> float:
    """log N(x; mu, sigma) in double precision."""
    z = (x - mu) / sigma
    return -0.5 * z * z - math.log(sigma) - 0.5 * math.log(2.0 * math.pi)


def f(x: mx.array) -> float:
    return float(x.item())


def approx(x: float) -> object:
    return pytest.approx(x, **TOL)


def plain(cm: ChoiceMap) -> dict:
    return {a: v.item() for a, v in cm}


K = mx.random.key


@gen
def chain(n):
    """mu ~ N(0, 1); y_i ~ N(mu, 2) for i < n at ("y", i)."""
    mu = normal(0.0, 1.0) @ "mu"
    for i in range(n):
        normal(mu, 2.0) @ ("y", i)
    return mu


def chain_score(mu: float, ys: list[float]) -> float:
    return ln(mu, 0.0, 1.0) + sum(ln(y, mu, 2.0) for y in ys)


Y3 = [1.0, -1.0, 2.0]
FULL3 = {"mu": 0.5, ("y", 0): 1.0, ("y", 1): -1.0, ("y", 2): 2.0}


def _chain3():
    tr, w = chain.generate((3,), choicemap(FULL3), key=K(0))
    return tr


# --------------------------------------------------------------------------- generate
def test_generate_weight_is_sum_of_constrained_log_densities():
    tr, w = two_normals.generate((), choicemap({"x": 1.5}), key=K(0))
    mu = f(tr["mu"])
    assert f(tr["x"]) == 1.5
    assert f(w) == approx(ln(1.5, mu, 1.0))
    assert f(tr.score) == approx(ln(mu, 0.0, 10.0) + ln(1.5, mu, 1.0))
    assert tr.retval.item() == 1.5
    assert w.shape == () and tr.score.shape == ()


def test_generate_hierarchical_constraints():
    tr, w = chain.generate((3,), choicemap({("y", 0): 1.0, ("y", 2): 2.0}), key=K(1))
    mu, y1 = f(tr["mu"]), f(tr[("y", 1)])
    assert f(w) == approx(ln(1.0, mu, 2.0) + ln(2.0, mu, 2.0))
    assert f(tr.score) == approx(chain_score(mu, [1.0, y1, 2.0]))


def test_generate_empty_constraints_weight_zero():
    for cons in (None, ChoiceMap.empty(), {}):
        tr, w = two_normals.generate((), cons, key=K(2))
        assert f(w) == 0.0
        mu, x = f(tr["mu"]), f(tr["x"])
        assert f(tr.score) == approx(ln(mu, 0.0, 10.0) + ln(x, mu, 1.0))
    # the same key gives the same trace as simulate
    sim = two_normals.simulate((), key=K(2))
    assert plain(sim.get_choices()) == plain(tr.get_choices())
    assert f(sim.score) == f(tr.score)


def test_generate_full_constraints_weight_equals_score_equals_assess():
    tr, w = chain.generate((3,), choicemap(FULL3), key=K(3))
    expected = chain_score(0.5, Y3)
    assert f(w) == approx(expected)
    assert f(tr.score) == approx(expected)
    ld, rv = chain.assess((3,), choicemap(FULL3))
    assert f(ld) == approx(expected)
    assert rv.item() == 0.5
    assert f(w) == f(tr.score)


def test_generate_accepts_a_plain_dict():
    tr, w = two_normals.generate((), {"mu": 1.0, "x": 2.0}, key=K(0))
    assert f(w) == approx(ln(1.0, 0.0, 10.0) + ln(2.0, 1.0, 1.0))


def test_generate_discrete_and_linear_regression():
    tr, w = beta_bernoulli.generate((), choicemap({"x": True}), key=K(4))
    p = f(tr["p"])
    assert f(w) == approx(math.log(p))
    xs = mx.array([0.0, 1.0, 2.0])
    obs = {"y0": 0.5, "y1": 1.5, "y2": 2.0}
    tr, w = linear_regression.generate((xs,), choicemap(obs), key=K(5))
    s, b = f(tr["slope"]), f(tr["intercept"])
    assert f(w) == approx(sum(ln(obs[f"y{i}"], s * i + b, 1.0) for i in range(3)))
    assert f(tr.retval) == s


def test_simulate_score_closed_form():
    tr = chain.simulate((4,), key=K(6))
    mu = f(tr["mu"])
    ys = [f(tr[("y", i)]) for i in range(4)]
    assert f(tr.score) == approx(chain_score(mu, ys))
    assert tr.retval.item() == mu
    assert tr.args == (4,)
    assert tr.gen_fn is chain
    assert tr.batch_shape == ()
    assert tr.get_choices().addresses() == ["mu", ("y", 0), ("y", 1), ("y", 2), ("y", 3)]


def test_simulate_is_deterministic_given_key():
    a, b = chain.simulate((3,), key=K(7)), chain.simulate((3,), key=K(7))
    assert plain(a.get_choices()) == plain(b.get_choices())
    c = chain.simulate((3,), key=K(8))
    assert plain(a.get_choices()) != plain(c.get_choices())
    # an int seed is the same as mx.random.key(seed)
    d = chain.simulate((3,), key=7)
    assert plain(a.get_choices()) == plain(d.get_choices())


# --------------------------------------------------------------------------- update
def test_update_kept_choices_new_minus_old():
    tr = _chain3()
    new, w, rd, disc = chain.update(tr, choicemap({"mu": 1.0}), key=K(1))
    expected = (ln(1.0, 0, 1) - ln(0.5, 0, 1)) + sum(ln(y, 1.0, 2) - ln(y, 0.5, 2) for y in Y3)
    assert f(w) == approx(expected)
    assert f(w) == approx(f(new.score) - f(tr.score))
    assert plain(disc) == {"mu": 0.5}
    assert plain(new.get_choices()) == {**FULL3, "mu": 1.0}
    assert f(new.score) == approx(chain_score(1.0, Y3))
    assert rd is UnknownChange
    # the old trace is untouched
    assert plain(tr.get_choices()) == FULL3


def test_update_removed_choices_subtract_old_log_density():
    tr = _chain3()
    new, w, rd, disc = chain.update(tr, None, args=(2,), key=K(1))
    assert f(w) == approx(-ln(2.0, 0.5, 2.0))
    assert plain(disc) == {("y", 2): 2.0}
    assert plain(new.get_choices()) == {"mu": 0.5, ("y", 0): 1.0, ("y", 1): -1.0}
    assert new.args == (2,)
    assert f(new.score) == approx(chain_score(0.5, Y3[:2]))


def test_update_newly_constrained_add_log_density_newly_sampled_add_zero():
    tr = _chain3()
    new, w, rd, disc = chain.update(tr, choicemap({("y", 3): 0.3}), args=(5,), key=K(1))
    y4 = f(new[("y", 4)])
    assert f(w) == approx(ln(0.3, 0.5, 2.0))  # y4 sampled: contributes 0
    assert disc.is_empty
    assert f(new[("y", 3)]) == pytest.approx(0.3, rel=1e-7)
    assert f(new.score) == approx(chain_score(0.5, [*Y3, 0.3, y4]))
    assert rd is UnknownChange


def test_update_combined_change_and_discard():
    tr = _chain3()
    new, w, _, disc = chain.update(tr, choicemap({"mu": -0.25, ("y", 0): 3.0}), args=(2,), key=K(2))
    expected = (
        (ln(-0.25, 0, 1) - ln(0.5, 0, 1))
        + (ln(3.0, -0.25, 2) - ln(1.0, 0.5, 2))
        + (ln(-1.0, -0.25, 2) - ln(-1.0, 0.5, 2))
        - ln(2.0, 0.5, 2)
    )
    assert f(w) == approx(expected)
    assert f(w) == approx(f(new.score) - f(tr.score))
    assert plain(disc) == {"mu": 0.5, ("y", 0): 1.0, ("y", 2): 2.0}


@pytest.mark.parametrize(
    "cons, new_n",
    [
        ({"mu": 1.0}, 3),
        ({"mu": 1.0}, 2),
        ({("y", 0): 4.0}, 1),
        ({"mu": -2.0, ("y", 3): 0.7}, 4),
    ],
)
def test_update_with_discard_restores_old_trace(cons, new_n):
    tr = _chain3()
    new, w, _, disc = chain.update(tr, choicemap(cons), args=(new_n,), key=K(3))
    back, w_back, _, disc_back = chain.update(new, disc, args=(3,), key=K(4))
    assert plain(back.get_choices()) == plain(tr.get_choices())
    assert back.get_choices().addresses() == tr.get_choices().addresses()
    assert f(back.score) == approx(f(tr.score))
    assert f(w_back) == approx(-f(w))
    assert back.args == (3,)
    # what the way back overwrote is exactly what the way there wrote (that existed before)
    kept_cons = {a: v for a, v in cons.items() if a in tr.get_choices()}
    assert {a: plain(disc_back)[a] for a in kept_cons} == pytest.approx(kept_cons)


def test_update_unchanged_args_empty_constraints_is_identity():
    tr = _chain3()
    for upd in (
        lambda: chain.update(tr, key=K(5)),
        lambda: chain.update(tr, ChoiceMap.empty(), args=(3,), key=K(5)),
        lambda: tr.update(None, key=K(5)),
    ):
        new, w, rd, disc = upd()
        assert f(w) == 0.0
        assert rd is NoChange
        assert disc.is_empty
        assert new is tr


def test_update_constraint_on_unchanged_value():
    tr = _chain3()
    new, w, _, disc = chain.update(tr, choicemap({("y", 1): -1.0}), key=K(6))
    assert f(w) == 0.0
    assert plain(disc) == {("y", 1): -1.0}


def test_update_args_only_rescores_kept_choices():
    xs = mx.array([0.0, 1.0])
    tr, _ = linear_regression.generate(
        (xs,), choicemap({"slope": 2.0, "intercept": 1.0, "y0": 0.5, "y1": 3.5}), key=K(0)
    )
    xs2 = mx.array([1.0, 2.0])
    new, w, _, disc = linear_regression.update(tr, None, args=(xs2,), key=K(1))
    expected = (ln(0.5, 3.0, 1) + ln(3.5, 5.0, 1)) - (ln(0.5, 1.0, 1) + ln(3.5, 3.0, 1))
    assert f(w) == approx(expected)
    assert disc.is_empty


# --------------------------------------------------------------------------- regenerate
def test_regenerate_only_unselected_kept_choices_count():
    tr, _ = two_normals.generate((), choicemap({"mu": 1.0, "x": 2.0}), key=K(0))
    new, w, rd = two_normals.regenerate(tr, select("mu"), key=K(1))
    new_mu = f(new["mu"])
    assert new_mu != 1.0
    assert f(new["x"]) == 2.0
    # weight = (new score - old score) - (new log p of selected) + (old log p of selected)
    formula = (f(new.score) - f(tr.score)) - ln(new_mu, 0, 10) + ln(1.0, 0, 10)
    assert f(w) == approx(formula)
    assert f(w) == approx(ln(2.0, new_mu, 1.0) - ln(2.0, 1.0, 1.0))
    assert f(new.score) == approx(ln(new_mu, 0, 10) + ln(2.0, new_mu, 1))
    # the interpreter's diff is conservative (something changed); once the static model
    # is analysed it is precise: the return value x was kept
    assert rd is UnknownChange or (rd is NoChange and f(new["x"]) == 2.0)
    analyze(two_normals, ())
    _, _, rd2 = two_normals.regenerate(tr, select("mu"), key=K(1))
    assert rd2 is NoChange


def test_regenerate_selecting_a_leaf_choice():
    tr, _ = two_normals.generate((), choicemap({"mu": 1.0, "x": 2.0}), key=K(0))
    new, w, _ = tr.regenerate(select("x"), key=K(2))
    # mu is unselected and kept with unchanged parameters: contributes 0
    assert f(w) == 0.0
    assert f(new["mu"]) == 1.0 and f(new["x"]) != 2.0


def test_regenerate_none_is_identity():
    tr = _chain3()
    new, w, rd = chain.regenerate(tr, Selection.none(), key=K(3))
    assert f(w) == 0.0
    assert rd is NoChange
    assert new is tr
    new2, w2, _ = chain.regenerate(tr, select(), key=K(3))
    assert f(w2) == 0.0 and plain(new2.get_choices()) == FULL3


def test_regenerate_all_weight_zero_and_resamples_everything():
    tr = _chain3()
    new, w, rd = chain.regenerate(tr, Selection.all(), key=K(4))
    assert f(w) == 0.0
    got = plain(new.get_choices())
    assert set(got) == set(FULL3)
    assert all(got[a] != FULL3[a] for a in FULL3)
    mu = got["mu"]
    assert f(new.score) == approx(chain_score(mu, [got[("y", i)] for i in range(3)]))


def test_regenerate_with_changed_args_new_and_removed_contribute_zero():
    tr = _chain3()
    new, w, _ = chain.regenerate(tr, select("mu"), args=(2,), key=K(5))
    mu2 = f(new["mu"])
    assert f(w) == approx(sum(ln(y, mu2, 2) - ln(y, 0.5, 2) for y in Y3[:2]))
    assert ("y", 2) not in new.get_choices()
    new, w, _ = chain.regenerate(tr, select(("y", 0)), args=(4,), key=K(6))
    # y1, y2 kept with unchanged params (0); y0 selected (0); y3 new (0)
    assert f(w) == 0.0
    assert f(new[("y", 1)]) == -1.0 and f(new[("y", 0)]) != 1.0
    y0, y3 = f(new[("y", 0)]), f(new[("y", 3)])
    assert f(new.score) == approx(chain_score(0.5, [y0, -1.0, 2.0, y3]))


def test_regenerate_same_key_same_result():
    tr = _chain3()
    a, wa, _ = chain.regenerate(tr, select("mu"), key=K(9))
    b, wb, _ = chain.regenerate(tr, select("mu"), key=K(9))
    assert plain(a.get_choices()) == plain(b.get_choices())
    assert f(wa) == f(wb)


# --------------------------------------------------------------------------- project
def test_project():
    tr = _chain3()
    assert f(chain.project(tr, select("y"))) == approx(sum(ln(y, 0.5, 2) for y in Y3))
    assert f(tr.project(select(("y", 1), "mu"))) == approx(ln(-1.0, 0.5, 2) + ln(0.5, 0, 1))
    assert f(chain.project(tr, ~select("mu"))) == approx(sum(ln(y, 0.5, 2) for y in Y3))
    assert f(chain.project(tr, Selection.all())) == approx(f(tr.score))
    assert f(chain.project(tr, Selection.all())) == approx(chain_score(0.5, Y3))
    assert f(chain.project(tr, Selection.none())) == 0.0


# --------------------------------------------------------------------------- propose
def test_propose_weight_is_assess_of_proposed_choices():
    choices, w, rv = chain.propose((3,), key=K(10))
    got = plain(choices)
    assert set(got) == set(FULL3)
    ld, rv2 = chain.assess((3,), choices)
    assert f(w) == approx(f(ld))
    assert f(w) == approx(chain_score(got["mu"], [got[("y", i)] for i in range(3)]))
    assert rv.item() == got["mu"] == rv2.item()
    # propose draws what simulate draws with the same key
    sim = chain.simulate((3,), key=K(10))
    assert plain(sim.get_choices()) == got


# --------------------------------------------------------------------------- distributions
def test_distribution_gfi_directly():
    tr = normal.simulate((1.0, 2.0), key=K(0))
    v = f(tr.retval)
    assert f(tr.score) == approx(ln(v, 1.0, 2.0))
    assert f(tr[()]) == v
    tr, w = normal.generate((1.0, 2.0), normal.leaf(0.5), key=K(0))
    assert f(w) == approx(ln(0.5, 1.0, 2.0)) and f(tr.score) == f(w)
    _, w0 = normal.generate((1.0, 2.0), None, key=K(0))
    assert f(w0) == 0.0
    new, w, rd, disc = normal.update(tr, ChoiceMap.leaf(1.5), key=K(1))
    assert f(w) == approx(ln(1.5, 1.0, 2.0) - ln(0.5, 1.0, 2.0))
    assert disc.value.item() == 0.5
    new, w, rd, disc = normal.update(tr, None, args=(0.0, 2.0), key=K(1))
    assert f(w) == approx(ln(0.5, 0.0, 2.0) - ln(0.5, 1.0, 2.0))
    assert disc.is_empty and f(new.retval) == 0.5
    new, w, _ = normal.regenerate(tr, Selection.all(), key=K(2))
    assert f(w) == 0.0 and f(new.retval) != 0.5
    assert f(normal.project(tr, Selection.all())) == f(tr.score)
    assert f(normal.project(tr, Selection.none())) == 0.0
    ld, rv = normal.assess((1.0, 2.0), ChoiceMap.leaf(3.0))
    assert f(ld) == approx(ln(3.0, 1.0, 2.0)) and rv.item() == 3.0


def test_vector_valued_choice_scores_the_sum():
    @gen
    def vec():
        return normal(mx.zeros(3), 1.0) @ "v"

    values = [0.1, -0.2, 1.3]
    tr, w = vec.generate((), choicemap({"v": mx.array(values)}), key=K(0))
    assert f(w) == approx(sum(ln(v, 0, 1) for v in values))
    assert tr["v"].shape == (3,)
    sim = vec.simulate((), key=K(1))
    assert sim["v"].shape == (3,)
    assert f(sim.score) == approx(sum(ln(v, 0, 1) for v in sim["v"].tolist()))


# --------------------------------------------------------------------------- sub-calls
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
    r = middle_gf(m) @ "mid"
    return r * 2.0


NESTED = {"m": 0.5, ("mid", "a"): 1.0, ("mid", "sub", "x"): 1.5}


def nested_score(m: float, a: float, x: float) -> float:
    return ln(m, 0, 3) + ln(a, m, 2) + ln(x, a, 1)


def test_nested_subcalls_generate_and_addresses():
    tr, w = outer_gf.generate((), choicemap({("mid", "sub", "x"): 1.5}), key=K(0))
    m, a = f(tr["m"]), f(tr[("mid", "a")])
    assert f(w) == approx(ln(1.5, a, 1.0))
    assert f(tr.score) == approx(nested_score(m, a, 1.5))
    assert tr.get_choices().addresses() == ["m", ("mid", "a"), ("mid", "sub", "x")]
    assert f(tr.retval) == 3.0


def test_trace_getitem_for_choices_calls_and_paths():
    tr, _ = outer_gf.generate((), choicemap(NESTED), key=K(0))
    assert f(tr["m"]) == 0.5
    assert f(tr[("mid", "a")]) == 1.0
    assert f(tr[("mid", "sub", "x")]) == 1.5
    assert f(tr["mid"]) == 1.5  # a sub-call address reads the call's return value
    assert f(tr[("mid", "sub")]) == 1.5
    sub = tr.get_subtrace("mid")
    assert isinstance(sub, DynamicTrace)
    assert sub.args[0].item() == 0.5
    assert f(sub.score) == approx(ln(1.0, 0.5, 2) + ln(1.5, 1.0, 1))
    assert f(sub.get_subtrace("sub").score) == approx(ln(1.5, 1.0, 1))
    with pytest.raises(AddressError, match="'nope'"):
        tr["nope"]
    with pytest.raises(AddressError, match=r"\('mid', 'nope'\)|'nope'"):
        tr[("mid", "nope")]
    with pytest.raises(AddressError):
        tr.get_subtrace("m")


def test_trace_getitem_on_a_namespace_raises():
    tr = _chain3()
    with pytest.raises(AddressError, match="namespace"):
        tr["y"]
    assert f(tr[("y", 2)]) == 2.0


def test_nested_subcalls_full_constraints_and_assess():
    tr, w = outer_gf.generate((), choicemap(NESTED), key=K(1))
    expected = nested_score(0.5, 1.0, 1.5)
    assert f(w) == approx(expected) and f(tr.score) == approx(expected)
    ld, rv = outer_gf.assess((), choicemap(NESTED))
    assert f(ld) == approx(expected)
    assert f(rv) == 3.0


def test_nested_subcalls_update():
    tr, _ = outer_gf.generate((), choicemap(NESTED), key=K(1))
    new, w, _, disc = outer_gf.update(tr, choicemap({("mid", "a"): 2.0}), key=K(2))
    expected = (ln(2.0, 0.5, 2) - ln(1.0, 0.5, 2)) + (ln(1.5, 2.0, 1) - ln(1.5, 1.0, 1))
    assert f(w) == approx(expected)
    assert plain(disc) == {("mid", "a"): 1.0}
    assert f(new.score) == approx(nested_score(0.5, 2.0, 1.5))
    new, w, _, disc = outer_gf.update(
        tr, choicemap({"m": -1.0, ("mid", "sub", "x"): 0.0}), key=K(3)
    )
    expected = (
        (ln(-1.0, 0, 3) - ln(0.5, 0, 3))
        + (ln(1.0, -1.0, 2) - ln(1.0, 0.5, 2))
        + (ln(0.0, 1.0, 1) - ln(1.5, 1.0, 1))
    )
    assert f(w) == approx(expected)
    assert plain(disc) == {"m": 0.5, ("mid", "sub", "x"): 1.5}
    back, wb, _, _ = outer_gf.update(new, disc, key=K(4))
    assert f(wb) == approx(-f(w))
    assert plain(back.get_choices()) == NESTED


def test_nested_subcalls_regenerate_and_project():
    tr, _ = outer_gf.generate((), choicemap(NESTED), key=K(1))
    new, w, _ = outer_gf.regenerate(tr, select(("mid", "a")), key=K(5))
    a2 = f(new[("mid", "a")])
    assert a2 != 1.0 and f(new["m"]) == 0.5 and f(new[("mid", "sub", "x")]) == 1.5
    assert f(w) == approx(ln(1.5, a2, 1) - ln(1.5, 1.0, 1))
    new, w, _ = outer_gf.regenerate(tr, select("m"), key=K(6))
    m2 = f(new["m"])
    assert f(w) == approx(ln(1.0, m2, 2) - ln(1.0, 0.5, 2))
    new, w, _ = outer_gf.regenerate(tr, select(("mid", "sub", "x")), key=K(7))
    assert f(w) == 0.0 and f(new[("mid", "sub", "x")]) != 1.5
    assert f(outer_gf.project(tr, select("mid"))) == approx(ln(1.0, 0.5, 2) + ln(1.5, 1.0, 1))
    assert f(outer_gf.project(tr, select(("mid", "sub")))) == approx(ln(1.5, 1.0, 1))
    assert f(outer_gf.project(tr, ~select(("mid", "a")))) == approx(ln(0.5, 0, 3) + ln(1.5, 1, 1))
    assert f(outer_gf.project(tr, Selection.all())) == approx(nested_score(0.5, 1.0, 1.5))


def test_distribution_called_at_a_subcall_address_is_a_choice():
    @gen
    def m():
        return normal(0.0, 1.0) @ "x"

    tr, w = m.generate((), {"x": 0.25}, key=K(0))
    assert f(w) == approx(ln(0.25, 0, 1))


# --------------------------------------------------------------------------- splice
@gen
def helper(m):
    h = normal(m, 1.0) @ "h"
    return h + 1.0


@gen
def spliced():
    m = normal(0.0, 1.0) @ "m"
    return splice(helper, m)


def test_splice_choices_are_not_namespaced():
    tr, w = spliced.generate((), choicemap({"m": 0.5, "h": 2.0}), key=K(0))
    assert tr.get_choices().addresses() == ["m", "h"]
    assert f(w) == approx(ln(0.5, 0, 1) + ln(2.0, 0.5, 1))
    assert f(w) == f(tr.score)
    assert f(tr.retval) == 3.0
    new, w2, _, disc = spliced.update(tr, choicemap({"h": 0.0}), key=K(1))
    assert f(w2) == approx(ln(0.0, 0.5, 1) - ln(2.0, 0.5, 1))
    assert plain(disc) == {"h": 2.0}


def test_single_gaussian_assess():
    ld, rv = single_gaussian.assess((), {"x": -0.75})
    assert f(ld) == approx(ln(-0.75, 0, 1))
    assert rv.item() == -0.75


# --------------------------------------------------------------------------- structure changes
def test_update_branch_flip_rescores_the_kept_choice():
    from genmlx.core.testing.models import mixed

    tr, w0 = mixed.generate((), {"coin": False, "x": 0.5}, key=K(0))
    assert f(w0) == approx(math.log(0.5) + ln(0.5, 0, 1))
    new, w, rd, disc = mixed.update(tr, {"coin": True}, key=K(1))
    # coin: log 0.5 - log 0.5 = 0; x is kept: its log density moves from N(0,1) to N(10,1)
    assert f(w) == approx(ln(0.5, 10, 1) - ln(0.5, 0, 1))
    assert plain(disc) == {"coin": False}
    assert f(new["x"]) == 0.5
    assert f(new.score) == approx(math.log(0.5) + ln(0.5, 10, 1))


def test_regenerate_branch_flip_counts_only_the_kept_choice():
    from genmlx.core.testing.models import mixed

    tr, _ = mixed.generate((), {"coin": False, "x": 0.5}, key=K(0))
    flipped = kept = 0
    for seed in range(8):
        new, w, _ = mixed.regenerate(tr, select("coin"), key=K(seed))
        assert f(new["x"]) == 0.5
        if new["coin"].item():
            flipped += 1
            assert f(w) == approx(ln(0.5, 10, 1) - ln(0.5, 0, 1))
        else:
            kept += 1
            assert f(w) == 0.0
    assert flipped > 0 and kept > 0  # both branches were exercised with these seeds


@gen
def _a_gf():
    return normal(0.0, 1.0) @ "v"


@gen
def _b_gf():
    return normal(5.0, 1.0) @ "v"


@gen
def _switching(flag):
    if flag:
        return _a_gf() @ "s"
    return _b_gf() @ "s"


def test_update_replacing_a_subcall_by_another_generative_function():
    tr, _ = _switching.generate((True,), {("s", "v"): 1.0}, key=K(0))
    new, w, _, disc = _switching.update(tr, {("s", "v"): 2.0}, args=(False,), key=K(1))
    # the old call is removed (−its score); the new one is generated (+constrained)
    assert f(w) == approx(ln(2.0, 5, 1) - ln(1.0, 0, 1))
    assert plain(disc) == {("s", "v"): 1.0}
    assert new.get_subtrace("s").gen_fn is _b_gf
    new, w, _, disc = _switching.update(tr, None, args=(False,), key=K(1))
    assert f(w) == approx(-ln(1.0, 0, 1))  # newly sampled: 0
    v = f(new[("s", "v")])
    assert f(new.score) == approx(ln(v, 5, 1))
    assert plain(disc) == {("s", "v"): 1.0}


def test_key_none_draws_from_the_os_not_the_global_generator():
    # DESIGN §6: key=None is a fresh key from the OS, never MLX's (per-thread) global
    # generator, so re-seeding that generator does not repeat the "fresh" draws
    mx.random.seed(3)
    a = two_normals.simulate(())
    mx.random.seed(3)
    b = two_normals.simulate(())
    assert plain(a.get_choices()) != plain(b.get_choices())


def test_trace_is_immutable_and_choices_property():
    tr = _chain3()
    with pytest.raises(AttributeError, match="immutable"):
        tr.score = mx.array(0.0)  # type: ignore[misc]
    assert plain(tr.choices) == plain(tr.get_choices()) == FULL3
    assert "chain" in repr(tr) and "4 choices" in repr(tr)


# ---------------------------------------------------------------------------- masked constraints
def test_masked_constraints_generate_and_update() -> None:
    """A masked constraint is given where its mask holds: weight counts only there."""
    import math

    import mlx.core as mx

    from genmlx.core import ChoiceMap, choicemap, gen
    from genmlx.core.testing.models import normal

    @gen
    def m():
        x = normal(0.0, 1.0) @ "x"
        normal(x, 1.0) @ "y"

    def lp(v: float, mu: float) -> float:
        return -0.5 * (v - mu) ** 2 - 0.5 * math.log(2 * math.pi)

    on = choicemap({"x": 0.5}).mask(mx.array(True))
    tr, w = m.generate((), on, key=mx.random.key(0))
    assert abs(float(w) - lp(0.5, 0.0)) < 1e-6 and float(tr["x"]) == 0.5
    off = choicemap({"x": 0.5}).mask(mx.array(False))
    tr2, w2 = m.generate((), off, key=mx.random.key(0))
    assert float(w2) == 0.0 and float(tr2["x"]) != 0.5
    # update: kept where off (weight 0, nothing discarded), replaced where on
    new, wu, _, disc = m.update(tr, off)
    assert float(wu) == 0.0 and float(new["x"]) == 0.5
    assert disc.get_mask("x").item() is False
    new, wu, _, disc = m.update(tr, choicemap({"x": -0.5}).mask(mx.array(True)))
    y = float(tr["y"])
    expected = lp(-0.5, 0.0) + lp(y, -0.5) - lp(0.5, 0.0) - lp(y, 0.5)
    assert abs(float(wu) - expected) < 1e-5 and float(disc["x"]) == 0.5
    # per particle under batching: particle i constrained iff mask[i]
    cm = choicemap({"x": mx.array([1.0, 2.0])}, batch_shape=(2,)).mask(mx.array([True, False]))
    vt, vw = m.vgenerate((), cm, 2, key=mx.random.key(3))
    assert float(vt["x"][0]) == 1.0 and float(vt["x"][1]) != 2.0
    assert abs(float(vw[0]) - lp(1.0, 0.0)) < 1e-6 and float(vw[1]) == 0.0
    assert isinstance(ChoiceMap.empty(), ChoiceMap)


def test_lenient_skips_address_checks_only_inside() -> None:
    import mlx.core as mx
    import pytest

    from genmlx.core import choicemap, gen, runtime
    from genmlx.core.errors import ConstraintError, MissingChoiceError
    from genmlx.core.testing.models import normal

    @gen
    def m():
        normal(0.0, 1.0) @ "x"

    with pytest.raises(ConstraintError):
        m.generate((), choicemap({"nope": 1.0}), key=mx.random.key(0))
    with runtime.lenient():
        m.generate((), choicemap({"nope": 1.0}), key=mx.random.key(0))
        ld, _ = m.assess((), choicemap({}))
        assert bool(mx.isfinite(ld))
    with pytest.raises(MissingChoiceError):
        m.assess((), choicemap({}))
    assert not runtime.is_lenient()
