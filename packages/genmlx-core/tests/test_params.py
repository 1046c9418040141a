"""Parameters (param, ParamStore, use_params) and gradients of log densities."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import (
    ChoiceMap,
    ParamStore,
    Selection,
    choice_gradients,
    choicemap,
    gen,
    param,
    param_gradients,
    select,
    use_params,
)
from genmlx.core.testing.models import beta_bernoulli, normal, two_normals

K = mx.random.key
TOL = {"rel": 1e-5, "abs": 1e-5}


def ln(x: float, mu: float, sigma: float) -> float:
    z = (x - mu) / sigma
    return -0.5 * z * z - math.log(sigma) - 0.5 * math.log(2.0 * math.pi)


def f(x: mx.array) -> float:
    return float(x.item())


@gen
def pmodel():
    mu = param("mu", 0.0)
    sigma = param("sigma", 1.0)
    return normal(mu, sigma) @ "x"


@gen
def psub(m):
    b = param("b", 0.25)
    return normal(m + b, 1.0) @ "z"


@gen
def pouter():
    a = param("a", -1.0)
    m = normal(a, 1.0) @ "m"
    return psub(m) @ "sub"


# --------------------------------------------------------------------------- param
def test_param_falls_back_to_init_without_a_store():
    tr, w = pmodel.generate((), {"x": 2.0}, key=K(0))
    assert f(w) == pytest.approx(ln(2.0, 0.0, 1.0), **TOL)


def test_param_reads_the_bound_store_and_falls_back_per_name():
    with use_params(ParamStore({"mu": mx.array(3.0)})):
        _, w = pmodel.generate((), {"x": 2.0}, key=K(0))
        ld, _ = pmodel.assess((), {"x": 2.0})
    assert f(w) == pytest.approx(ln(2.0, 3.0, 1.0), **TOL)  # sigma: init 1.0
    assert f(ld) == f(w)
    with use_params({"mu": 3.0, "sigma": 2.0}) as st:  # a plain mapping is accepted
        assert isinstance(st, ParamStore)
        _, w = pmodel.generate((), {"x": 2.0}, key=K(0))
    assert f(w) == pytest.approx(ln(2.0, 3.0, 2.0), **TOL)
    # the store is unbound again
    _, w = pmodel.generate((), {"x": 2.0}, key=K(0))
    assert f(w) == pytest.approx(ln(2.0, 0.0, 1.0), **TOL)


def test_bind_and_nesting_restore_the_outer_store():
    outer, inner = ParamStore({"mu": 1.0}), ParamStore({"mu": 5.0})
    with outer.bind():
        with inner.bind() as s:
            assert s is inner
            _, wi = pmodel.generate((), {"x": 2.0}, key=K(0))
        _, wo = pmodel.generate((), {"x": 2.0}, key=K(0))
    assert f(wi) == pytest.approx(ln(2.0, 5.0, 1.0), **TOL)
    assert f(wo) == pytest.approx(ln(2.0, 1.0, 1.0), **TOL)


def test_params_in_subcalls_and_simulate():
    with use_params({"a": 2.0, "b": -0.5}):
        tr = pouter.simulate((), key=K(1))
    m, z = f(tr["m"]), f(tr[("sub", "z")])
    assert f(tr.score) == pytest.approx(ln(m, 2.0, 1) + ln(z, m - 0.5, 1), **TOL)


def test_params_under_batching():
    store = ParamStore({"mu": 5.0, "sigma": 0.5})
    with use_params(store):
        tr = pmodel.vsimulate((), 4, key=K(2))
        keys = mx.random.split(K(2), 4)
        singles = [pmodel.simulate((), key=keys[i]) for i in range(4)]
    for i in range(4):
        assert tr["x"][i].item() == pytest.approx(f(singles[i]["x"]), abs=1e-6)
        assert tr.score[i].item() == pytest.approx(ln(tr["x"][i].item(), 5.0, 0.5), **TOL)


# --------------------------------------------------------------------------- ParamStore
def test_param_store_initialize_collects_inits():
    st = ParamStore.initialize(pmodel, ())
    assert sorted(st) == ["mu", "sigma"]
    assert f(st["mu"]) == 0.0 and f(st["sigma"]) == 1.0
    st2 = ParamStore.initialize(pouter, ())
    assert dict((k, f(v)) for k, v in st2.items()) == {"a": -1.0, "b": 0.25}


def test_param_store_is_functional():
    st = ParamStore({"mu": 1.0})
    st2 = st.set("mu", 2.0)
    st3 = st2.update({"sigma": 3.0})
    assert f(st["mu"]) == 1.0 and f(st2["mu"]) == 2.0
    assert len(st) == 1 and len(st2) == 1 and len(st3) == 2
    assert {k: f(v) for k, v in st3.values_dict.items()} == {"mu": 2.0, "sigma": 3.0}
    d = st3.values_dict
    d["mu"] = mx.array(100.0)
    assert f(st3["mu"]) == 2.0  # values_dict is a fresh dict
    assert st["mu"].dtype == mx.float32
    with pytest.raises(KeyError, match="'nope'"):
        st["nope"]


# --------------------------------------------------------------------------- param_gradients
def test_param_gradients_analytic():
    tr, _ = pmodel.generate((), {"x": 2.0}, key=K(0))
    store = ParamStore({"mu": 0.5, "sigma": 2.0, "unused": 3.0})
    g = param_gradients(tr, store)
    x, mu, s = 2.0, 0.5, 2.0
    assert f(g["mu"]) == pytest.approx((x - mu) / s**2, **TOL)
    assert f(g["sigma"]) == pytest.approx(-1 / s + (x - mu) ** 2 / s**3, **TOL)
    assert f(g["unused"]) == 0.0


def test_param_gradient_unit_sigma_is_x_minus_mu():
    tr, _ = pmodel.generate((), {"x": -1.5}, key=K(0))
    g = param_gradients(tr, ParamStore({"mu": 0.75}))
    assert f(g["mu"]) == pytest.approx(-1.5 - 0.75, **TOL)
    assert list(g) == ["mu"]


def test_param_gradients_through_subcalls():
    tr, _ = pouter.generate((), {"m": 0.5, ("sub", "z"): 2.0}, key=K(0))
    g = param_gradients(tr, ParamStore({"a": 0.0, "b": 1.0}))
    assert f(g["a"]) == pytest.approx(0.5 - 0.0, **TOL)
    assert f(g["b"]) == pytest.approx(2.0 - (0.5 + 1.0), **TOL)


def test_param_gradients_batched_trace_sums_particles():
    xs = mx.array([1.0, 2.0, 4.0])
    tr, _ = pmodel.vgenerate((), choicemap({"x": xs}, batch_shape=(3,)), 3, key=K(0))
    g = param_gradients(tr, ParamStore({"mu": 0.5, "sigma": 2.0}))
    assert f(g["mu"]) == pytest.approx(sum((x - 0.5) / 4 for x in (1, 2, 4)), **TOL)
    assert f(g["sigma"]) == pytest.approx(sum(-0.5 + (x - 0.5) ** 2 / 8 for x in (1, 2, 4)), **TOL)


# --------------------------------------------------------------------------- choice_gradients
def test_choice_gradients_two_normals():
    tr, _ = two_normals.generate((), {"mu": 1.0, "x": 3.0}, key=K(0))
    g = choice_gradients(tr, select("mu", "x"))
    assert f(g["mu"]) == pytest.approx(-1.0 / 100 + (3.0 - 1.0), **TOL)
    assert f(g["x"]) == pytest.approx(-(3.0 - 1.0), **TOL)
    g = choice_gradients(tr, select("mu"))
    assert g.addresses() == ["mu"]
    assert f(g["mu"]) == pytest.approx(1.99, **TOL)


@gen
def normal_chain():
    a = normal(0.0, 1.0) @ "a"
    b = normal(a, 2.0) @ "b"
    return normal(b, 0.5) @ "c"


def test_choice_gradients_normal_chain():
    a, b, c = 0.3, -0.4, 1.1
    tr, _ = normal_chain.generate((), {"a": a, "b": b, "c": c}, key=K(0))
    g = choice_gradients(tr, Selection.all())
    assert g.addresses() == ["a", "b", "c"]
    assert f(g["a"]) == pytest.approx(-a + (b - a) / 4, **TOL)
    assert f(g["b"]) == pytest.approx(-(b - a) / 4 + (c - b) / 0.25, **TOL)
    assert f(g["c"]) == pytest.approx(-(c - b) / 0.25, **TOL)
    g = choice_gradients(tr, ~select("b"))
    assert g.addresses() == ["a", "c"]
    assert f(g["a"]) == pytest.approx(-a + (b - a) / 4, **TOL)


def test_choice_gradients_nested_addresses():
    tr, _ = pouter.generate((), {"m": 0.5, ("sub", "z"): 2.0}, key=K(0))
    g = choice_gradients(tr, select(("sub", "z"), "m"))
    # log N(m; -1, 1) + log N(z; m + 0.25, 1)
    assert f(g["m"]) == pytest.approx(-(0.5 + 1.0) + (2.0 - 0.75), **TOL)
    assert f(g[("sub", "z")]) == pytest.approx(-(2.0 - 0.75), **TOL)


def test_choice_gradients_batched_per_particle():
    mus = mx.array([0.0, 1.0, -2.0, 0.5])
    xs = mx.array([1.0, 1.0, 3.0, -0.5])
    tr, _ = two_normals.vgenerate(
        (), choicemap({"mu": mus, "x": xs}, batch_shape=(4,)), 4, key=K(0)
    )
    g = choice_gradients(tr, select("mu", "x"))
    assert g.batch_shape == (4,)
    assert g["mu"].shape == (4,)
    exp_mu = [-m / 100 + (x - m) for m, x in zip(mus.tolist(), xs.tolist())]
    exp_x = [-(x - m) for m, x in zip(mus.tolist(), xs.tolist())]
    np.testing.assert_allclose(np.array(g["mu"]), exp_mu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.array(g["x"]), exp_x, rtol=1e-5, atol=1e-5)


def test_choice_gradients_vector_choice():
    @gen
    def vec():
        return normal(mx.array([0.0, 1.0]), 2.0) @ "v"

    tr, _ = vec.generate((), {"v": mx.array([1.0, -1.0])}, key=K(0))
    g = choice_gradients(tr, select("v"))
    np.testing.assert_allclose(np.array(g["v"]), [-(1 - 0) / 4, -(-1 - 1) / 4], rtol=1e-6)


def test_choice_gradients_discrete_choice_raises():
    tr, _ = beta_bernoulli.generate((), {"p": 0.5, "x": True}, key=K(0))
    with pytest.raises(TypeError, match=r"'x'.*bool"):
        choice_gradients(tr, select("x"))
    with pytest.raises(TypeError, match="'x'"):
        choice_gradients(tr, Selection.all())
    g = choice_gradients(tr, select("p"))
    # d/dp [log Beta(p; 2, 2) + log p] = 1/p - 1/(1-p) + 1/p at p = 0.5
    assert f(g["p"]) == pytest.approx(2.0 - 2.0 + 2.0, **TOL)


def test_choice_gradients_empty_selection():
    tr, _ = two_normals.generate((), {"mu": 1.0, "x": 3.0}, key=K(0))
    g = choice_gradients(tr, Selection.none())
    assert isinstance(g, ChoiceMap) and len(g) == 0


def test_param_gradients_empty_store():
    tr, _ = pmodel.generate((), {"x": 2.0}, key=K(0))
    assert param_gradients(tr, ParamStore()) == {}


def test_param_store_passed_into_compile_is_an_input():
    from genmlx.core import compile

    def run(key, store):
        with use_params(store):
            return pmodel.generate((), {"x": 2.0}, key=key)

    crun = compile(run)
    for mu in (0.0, 1.5, -3.0):
        tr, w = crun(K(0), ParamStore({"mu": mu, "sigma": 1.0}))
        assert f(w) == pytest.approx(ln(2.0, mu, 1.0), **TOL)


def test_initialize_ignores_an_ambient_store():
    # "collect every parameter it reads, at its init value" — whatever store is bound
    with use_params({"mu": 7.0}):
        st = ParamStore.initialize(pmodel, ())
    assert sorted(st) == ["mu", "sigma"]
    assert f(st["mu"]) == 0.0 and f(st["sigma"]) == 1.0
