"""The compiled tier: model graphs, the pure log density, compiled batched operations and
dependency-aware updates, each checked against the interpreter."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import (
    Distribution,
    NoChange,
    StaticModelError,
    UnknownChange,
    analyze,
    choicemap,
    compile,
    gen,
    logdensity,
    select,
    static,
)
from genmlx.core import constraints as C
from genmlx.core.incremental import execution_counter
from genmlx.core.testing.models import MODELS, beta, normal

TOL = {"rel": 1e-5, "abs": 1e-5}


def ln(x: float, mu: float, sd: float) -> float:
    return -0.5 * ((x - mu) / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)


@gen
def line(xs):
    slope = normal(0.0, 1.0) @ "slope"
    intercept = normal(0.0, 2.0) @ "intercept"
    normal(slope * xs + intercept, 0.5) @ "ys"
    return slope


XS = mx.linspace(0, 1, 5)


# ---------------------------------------------------------------------------- graphs
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_conformance_model_is_static(name):
    model = MODELS[name]
    args = (mx.array([1.0, 2.0, 3.0]),) if "linear_regression" in name else ()
    g = analyze(model, args)
    if name == "mixed":  # a Python branch on the coin: dynamic, and says where
        assert not g.is_static and "after the choice at 'coin'" in g.reason
        return
    assert g.is_static, g.reason
    tr = model.simulate(args, key=mx.random.key(0))
    # the graph lists exactly the trace's choices (calls list theirs below them)
    listed = {s.path for s in g.sites if s.kind == "choice"}
    for s in g.sites:
        if s.kind == "call":
            listed |= {(*s.path, *p) for p, *_ in s.call_choices}
    assert listed == {p for p, _ in tr.get_choices().leaves()}


def test_graph_dependencies_and_repr():
    g = analyze(line, (XS,), choicemap({"ys": 2 * XS}))
    ys = g.site("ys")
    assert ys.observed and ys.parents == {("slope",), ("intercept",)} and ys.arg_parents == {0}
    assert g.site("slope").parents == frozenset() and not g.site("slope").observed
    assert g.retval_parents == {("slope",)}
    assert [s.address for s in g.latent_sites()] == ["slope", "intercept"]
    text = repr(g)
    assert "static" in text and "'ys'" in text and "arg0" in text


def test_dynamic_model_says_why_and_falls_back():
    @gen
    def branchy():
        x = normal(0.0, 1.0) @ "x"
        if x > 0:  # Python control flow on a random value
            normal(1.0, 1.0) @ "pos"
        return x

    g = analyze(branchy, ())
    assert not g.is_static
    assert "concrete value" in g.reason
    with pytest.raises(StaticModelError, match="dynamic"):
        logdensity(branchy, ())
    # the interpreter still runs it
    tr = branchy.simulate((), key=mx.random.key(3))
    assert "x" in tr.get_choices()


def test_analysis_inside_a_transformation_matches_eager():
    @gen
    def m(xs):
        a = normal(0.0, 1.0) @ "a"
        normal(a * xs, 1.0) @ "y"

    def f(xs):
        return mx.array(float(len(analyze(m, (xs,)).sites)))

    eager = analyze(m, (XS,))
    static.clear(m)
    out = compile(lambda xs: m.simulate((xs,), key=mx.random.key(0)).score)(XS)
    assert out.shape == ()
    assert [s.path for s in analyze(m, (XS,)).sites] == [s.path for s in eager.sites]


# ---------------------------------------------------------------------------- log density
@gen
def constrained():
    mu = normal(0.0, 1.0) @ "mu"
    p = beta(2.0, 3.0) @ "p"
    normal(mu, 1.0 + p) @ "y"


def test_logdensity_equals_assess_plus_log_jacobian():
    obs = choicemap({"y": 0.7})
    ld = logdensity(constrained, (), obs)
    assert ld.dim == 2 and ld.addresses == ["mu", "p"]
    y = mx.array([0.3, -0.4])
    p = 1.0 / (1.0 + math.exp(0.4))
    cm = choicemap({"mu": 0.3, "p": p, "y": 0.7})
    joint, _ = constrained.assess((), cm)
    log_jac = math.log(p) + math.log(1 - p)  # d sigmoid / dy
    assert float(ld(y)) == pytest.approx(float(joint) + log_jac, **TOL)
    back = ld.from_choicemap(cm)
    np.testing.assert_allclose(np.array(back), np.array(y), atol=1e-5)


def test_logdensity_gradient_matches_finite_differences():
    ld = logdensity(constrained, (), choicemap({"y": 0.7}))
    y = mx.array([0.3, -0.4])
    _, g = ld.value_and_grad(y)
    eps = 1e-3
    for i in range(2):
        e = mx.zeros(2).at[i].add(eps)
        fd = (float(ld(y + e)) - float(ld(y - e))) / (2 * eps)
        assert float(g[i]) == pytest.approx(fd, rel=2e-2, abs=2e-3)


def test_logdensity_without_transform_equals_assess_and_choice_gradients():
    from genmlx.core import choice_gradients

    obs = choicemap({"ys": 2 * XS})
    ld = logdensity(line, (XS,), obs, transform=False)
    tr, _ = line.generate((XS,), obs, key=mx.random.key(4))
    y = ld.from_trace(tr)
    v, g = ld.value_and_grad(y)
    assert float(v) == pytest.approx(float(tr.score), **TOL)
    grads = choice_gradients(tr, select("slope", "intercept"))
    got = grads[0] if isinstance(grads, tuple) else grads
    assert float(g[0]) == pytest.approx(float(got["slope"]), rel=1e-4, abs=1e-4)
    assert float(g[1]) == pytest.approx(float(got["intercept"]), rel=1e-4, abs=1e-4)


def test_logdensity_batched_rows_are_independent():
    ld = logdensity(constrained, (), choicemap({"y": 0.7}))
    ys = mx.random.normal((6, 2), key=mx.random.key(5))
    v, g = ld.value_and_grad(ys)
    for i in range(6):
        vi, gi = ld.value_and_grad(ys[i])
        assert float(v[i]) == pytest.approx(float(vi), **TOL)
        np.testing.assert_allclose(np.array(g[i]), np.array(gi), rtol=1e-5, atol=1e-5)


class _Uniform(Distribution):
    """U(low, high) with its domain declared (a bound may come from another choice)."""

    name = "test_uniform"
    params = ("low", "high")

    def sample(self, key, low, high, *, shape=()):
        low, high = mx.array(low), mx.array(high)
        u = mx.random.uniform(
            shape=tuple(shape) + mx.broadcast_shapes(low.shape, high.shape), key=key
        )
        return low + (high - low) * u

    def log_prob(self, value, low, high):
        value, low, high = mx.array(value), mx.array(low), mx.array(high)
        inside = mx.logical_and(value >= low, value <= high)
        return mx.where(inside, -mx.log(high - low), -mx.inf)

    def domain(self, low, high):
        return C.interval(low, high)


uniform_ = _Uniform()


@gen
def garch_like():
    a = beta(2.0, 2.0) @ "a"
    b = uniform_(0.0, 1.0 - a) @ "b"  # b < 1 - a: a bound given by another choice
    return a + b


def _sig(y: float) -> float:
    return 1.0 / (1.0 + math.exp(-y))


def test_logdensity_dependent_bound_is_reevaluated():
    ld = logdensity(garch_like, ())
    assert ld.dim == 2
    for ya, yb in ((0.3, -0.2), (-1.5, 1.0)):
        a = _sig(ya)
        b = (1.0 - a) * _sig(yb)
        log_beta = math.log(6.0 * a * (1 - a))  # Beta(2, 2) density 6 a (1 - a)
        log_unif = -math.log(1.0 - a)
        jac = math.log(a * (1 - a)) + math.log((1.0 - a) * _sig(yb) * (1 - _sig(yb)))
        got = float(ld(mx.array([ya, yb])))
        assert got == pytest.approx(log_beta + log_unif + jac, rel=1e-4, abs=1e-4)
        values = ld.constrain(mx.array([ya, yb]))
        assert float(values["b"]) == pytest.approx(b, rel=1e-5)
        assert 0.0 < float(values["b"]) < 1.0 - float(values["a"])


def test_logdensity_refuses_discrete_latents():
    from genmlx.core.testing.models import bernoulli

    @gen
    def disc():
        bernoulli(0.5) @ "z"

    with pytest.raises(StaticModelError, match="discrete"):
        logdensity(disc, ())


def test_logdensity_domain_overrides_and_missing_domains():
    class NoDomain(type(normal)):  # type: ignore[misc]
        def domain(self, *params):
            return None

    nd = NoDomain()

    @gen
    def m():
        nd(0.0, 1.0) @ "x"

    with pytest.raises(StaticModelError, match="domain"):
        logdensity(m, ())
    ld = logdensity(m, (), domains={"x": C.positive})
    x = ld.constrain(mx.array([0.0]))["x"]
    assert float(x) == pytest.approx(1.0)


# ---------------------------------------------------------------------------- compiled ops
def test_batched_operations_compile_on_the_second_call_and_agree():
    static.clear(line)
    obs = choicemap({"ys": 2 * XS})
    with static.auto_compile(False):
        ref_tr, ref_w = line.vgenerate((XS,), obs, 64, key=mx.random.key(1))
    outs = [line.vgenerate((XS,), obs, 64, key=mx.random.key(1)) for _ in range(3)]
    assert static.stats(line)["compiled_programs"] >= 1
    for tr, w in outs:
        np.testing.assert_allclose(np.array(w), np.array(ref_w), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(np.array(tr["slope"]), np.array(ref_tr["slope"]))
    # the trace keeps the caller's argument objects
    assert outs[-1][0].args[0] is XS


DATA = mx.array([1.0, 2.0, 3.0])


@gen
def uses_global():
    mu = normal(0.0, 1.0) @ "mu"
    return mu + mx.sum(DATA)


def test_rebinding_a_captured_global_recompiles():
    global DATA
    static.clear(uses_global)
    for _ in range(3):
        tr = uses_global.vsimulate((), 4, key=mx.random.key(0))
    assert float(tr.retval[0] - tr["mu"][0]) == pytest.approx(6.0)
    old = DATA
    try:
        DATA = mx.array([10.0, 10.0, 10.0])
        tr = uses_global.vsimulate((), 4, key=mx.random.key(0))
        assert float(tr.retval[0] - tr["mu"][0]) == pytest.approx(30.0)
    finally:
        DATA = old


# ---------------------------------------------------------------------------- incremental
@gen
def chain10():
    x = normal(0.0, 1.0) @ ("x", 0)
    for i in range(1, 10):
        x = normal(x, 1.0) @ ("x", i)
    z = normal(0.0, 1.0) @ "z"
    normal(z, 1.0) @ "w"
    return z


def test_dependency_aware_update_counts_and_equals_the_interpreter():
    tr = chain10.simulate((), key=mx.random.key(0))
    analyze(chain10, ())
    cons = choicemap({"z": 0.5})
    with static.auto_compile(False):
        ref = chain10.update(tr, cons, key=mx.random.key(1))
    with execution_counter() as c:
        got = chain10.update(tr, cons, key=mx.random.key(1))
    assert (c.evaluated, c.skipped) == (2, 10)  # z and w run; the x chain is kept
    assert float(got.weight) == pytest.approx(float(ref.weight), **TOL)
    assert float(got.trace.score) == pytest.approx(float(ref.trace.score), **TOL)
    z0, w = float(tr["z"]), float(tr["w"])
    expected = ln(0.5, 0, 1) + ln(w, 0.5, 1) - ln(z0, 0, 1) - ln(w, z0, 1)
    assert float(got.weight) == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert got.retdiff is UnknownChange  # the return value is z


def test_dependency_aware_regenerate_runs_only_the_children():
    tr = chain10.simulate((), key=mx.random.key(2))
    analyze(chain10, ())
    with execution_counter() as c:
        new, w, rd = chain10.regenerate(tr, select(("x", 3)), key=mx.random.key(3))
    assert (c.evaluated, c.skipped) == (2, 10)  # x3 resampled, x4 rescored
    assert rd is NoChange  # the return value z was kept
    with static.auto_compile(False):
        ref = chain10.regenerate(tr, select(("x", 3)), key=mx.random.key(3))
    assert float(w) == pytest.approx(float(ref.weight), **TOL)
    x2, x4 = float(tr[("x", 2)]), float(tr[("x", 4)])
    x3n, x3o = float(new[("x", 3)]), float(tr[("x", 3)])
    assert float(w) == pytest.approx(ln(x4, x3n, 1) - ln(x4, x3o, 1), rel=1e-4, abs=1e-4)
    assert float(new[("x", 2)]) == x2


def test_subcall_gets_precise_argdiffs():
    calls = {"n": 0}

    @gen
    def sub(m):
        calls["n"] += 1
        return normal(m, 1.0) @ "v"

    @gen
    def top(xs):
        a = normal(0.0, 1.0) @ "a"
        b = normal(0.0, 1.0) @ "b"
        sub(mx.sum(xs) + b) @ "s"  # a new array object every run, computed from b
        return a

    tr = top.simulate((XS,), key=mx.random.key(0))
    analyze(top, (XS,))
    n0 = calls["n"]
    new, w, rd, _ = top.update(tr, choicemap({"a": 0.3}), key=mx.random.key(1))
    assert calls["n"] == n0  # sub's argument does not depend on a: not re-run
    assert new.get_subtrace("s") is tr.get_subtrace("s")
    assert rd is UnknownChange
    new, w, rd, _ = top.update(tr, choicemap({"b": 0.3}), key=mx.random.key(1))
    assert calls["n"] == n0 + 1
    assert rd is NoChange
